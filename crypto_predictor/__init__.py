"""crypto-predictor: honest crypto price predictions, trained offline and served over HTTP."""

__version__ = "0.1.0"
