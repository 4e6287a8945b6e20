"""Models: analytic functions, ODE systems and symbolic models."""

from .analytic import AnalyticModel as AnalyticModel
from .base import AbstractModel as AbstractModel
from .ode import ODEModel as ODEModel


def __getattr__(name: str):
    # sympy takes a third of a second to import: SymbolicModel loads it on first use.
    if name == "SymbolicModel":
        from .symbolic import SymbolicModel

        return SymbolicModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_petab_problem(obj) -> bool:
    """Whether `obj` is a `PetabProblem`, without importing the PEtab reader (and sympy)."""
    import sys

    petab = sys.modules.get("fimkit.models.petab")
    return petab is not None and isinstance(obj, petab.PetabProblem)
