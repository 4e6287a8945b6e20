"""Models: analytic functions, ODE systems and symbolic models."""

from .analytic import AnalyticModel as AnalyticModel
from .base import AbstractModel as AbstractModel
from .ode import ODEModel as ODEModel
from .symbolic import SymbolicModel as SymbolicModel
