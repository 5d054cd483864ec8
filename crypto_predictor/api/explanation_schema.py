"""The documented shape of ``explanation`` in a prediction (``serving.explain``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Contribution(BaseModel):
    feature: str
    value: float = Field(description="The feature's value in the newest row")
    contribution: float = Field(description="Its additive share of model_log_return (log-return units)")


class Omitted(BaseModel):
    kind: str
    why: str


class Explanation(BaseModel):
    """base_value + sum of every feature's contribution = model_log_return; the served forecast is
    (1 - naive_weight) x model_log_return."""

    data_as_of: str = Field(description="Close time of the newest candle explained (the prediction's data_as_of)",
                            json_schema_extra={"format": "date-time"})
    model: str = Field(description="The model kind behind the served forecast (ensemble or a single kind)")
    member_weights: dict[str, float] = Field(description="Weight of each member in the ensemble's forecast")
    naive_weight: float = Field(ge=0, le=1, description="The skill gate's weight on the no-change forecast: 1 means "
                                                        "the model is explained here but the price is served flat")
    base_value: float = Field(description="The model's expected log return (TreeSHAP expected value, linear "
                                          "intercept), plus the weighted forecast of any omitted member")
    model_log_return: float
    served_log_return: float
    contributions: list[Contribution] = Field(description="The 8 largest by absolute value, largest first: exact "
                                                          "TreeSHAP for the tree members, coefficient x standardised "
                                                          "value for the linear one, each times its member weight")
    other_features: float = Field(description="Sum of the contributions not listed")
    omitted: list[Omitted] = Field(description="Members left out of the contributions (the LSTM), and why")


EXPLAIN_DOC = ("explain: true adds data.explanation, the top 8 feature contributions to the served forecast; "
               "computed once per model version, asset, timeframe and candle, and only when asked.")
