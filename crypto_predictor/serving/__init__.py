"""Online: what the API calls. The prediction service and what it reads (loaded bundles, candle memos),
the prediction log and its live figures, and the chart analysis. No Flask, no training code."""
