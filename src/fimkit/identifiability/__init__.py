"""Identifiability and sloppiness: what an experiment can and cannot determine about a model.

`identifiability` reads the rank, null space and readable combinations off a Fisher information;
`sloppiness` its normalised eigenvalue spectrum; `prediction_uncertainty` splits the variance of a
prediction over the eigen-directions; `structural_identifiability` decides local structural
identifiability of a `SymbolicModel` exactly. See ``docs/identifiability.md`` and
``docs/structural_identifiability.md``.
"""

from .local import DEFAULT_RSE_THRESHOLD as DEFAULT_RSE_THRESHOLD
from .local import IDENTIFIABLE as IDENTIFIABLE
from .local import NOT_IDENTIFIABLE as NOT_IDENTIFIABLE
from .local import PRACTICALLY_NONIDENTIFIABLE as PRACTICALLY_NONIDENTIFIABLE
from .local import Combination as Combination
from .local import Identifiability as Identifiability
from .local import Symmetry as Symmetry
from .local import identifiability as identifiability
from .sloppiness import EigenParameter as EigenParameter
from .sloppiness import PredictionUncertainty as PredictionUncertainty
from .sloppiness import Sloppiness as Sloppiness
from .sloppiness import plot_spectrum as plot_spectrum
from .sloppiness import prediction_uncertainty as prediction_uncertainty
from .sloppiness import sloppiness as sloppiness

# The structural analysis needs sympy, which takes a third of a second to import: load it on use.
_STRUCTURAL = (
    "LOCALLY_IDENTIFIABLE",
    "STRUCTURAL_VERDICTS",
    "StructuralIdentifiability",
    "structural_identifiability",
)


def __getattr__(name: str):
    if name in _STRUCTURAL:
        from . import structural

        return getattr(structural, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
