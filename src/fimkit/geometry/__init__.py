"""Information geometry: the Fisher information as a Riemannian metric on parameter space.

`kl_divergence` (exact or Monte Carlo, with the quadratic approximation ½ dθᵀ I dθ beside it),
`path_length` (the Fisher–Rao length of a path), `geodesic` (integrated to the edge of the model
manifold), `mbam` (one step of the manifold boundary approximation method: the limit at the edge and
the reduced model, refitted), and geodesic-accelerated Levenberg–Marquardt for least-squares fits.
See ``docs/geometry.md``.
"""

from .geodesic_lm import LeastSquaresResult as LeastSquaresResult
from .geodesic_lm import fit_geodesic_lm as fit_geodesic_lm
from .geodesic_lm import levenberg_marquardt as levenberg_marquardt
from .kl import KLDivergence as KLDivergence
from .kl import kl_divergence as kl_divergence
from .mbam import BoundaryLimit as BoundaryLimit
from .mbam import MBAMResult as MBAMResult
from .mbam import classify_limit as classify_limit
from .mbam import mbam as mbam
from .mbam import reduce_model as reduce_model
from .paths import Geodesic as Geodesic
from .paths import PathLength as PathLength
from .paths import geodesic as geodesic
from .paths import path_length as path_length
