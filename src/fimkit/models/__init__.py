"""Models: analytic functions and ODE systems."""

from .analytic import AnalyticModel as AnalyticModel
from .base import AbstractModel as AbstractModel
from .ode import ODEModel as ODEModel
