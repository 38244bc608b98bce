"""Neural (and fixed) parameter providers for the differentiable HBV."""

from .networks import ROUTE_NAMES, FixedParameters, NeuralParameters, lstm_precision

__all__ = ["ROUTE_NAMES", "FixedParameters", "NeuralParameters", "lstm_precision"]
