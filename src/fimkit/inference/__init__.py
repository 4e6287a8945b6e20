"""Inference from a Fisher information: intervals, derived quantities, predictions."""

from .intervals import delta_method as delta_method
from .intervals import prediction_variance as prediction_variance
from .intervals import wald_intervals as wald_intervals
