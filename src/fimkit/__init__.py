"""fimkit: Fisher information, identifiability and optimal design with exact sensitivities.

The public surface; see the documentation in ``docs/`` for each concept.
"""

__version__ = "0.1.0"

from . import _jax as _jax  # float64 and the compilation cache, before anything else
from . import errors as errors
from . import examples as examples
from . import oed as oed
from .data import Data as Data
from .design import Bolus as Bolus
from .design import Design as Design
from .design import Group as Group
from .design import Infusion as Infusion
from .geometry import BoundaryLimit as BoundaryLimit
from .geometry import Geodesic as Geodesic
from .geometry import KLDivergence as KLDivergence
from .geometry import MBAMResult as MBAMResult
from .geometry import PathLength as PathLength
from .geometry import geodesic as geodesic
from .geometry import kl_divergence as kl_divergence
from .geometry import mbam as mbam
from .geometry import path_length as path_length
from .identifiability import Combination as Combination
from .identifiability import EigenParameter as EigenParameter
from .identifiability import Identifiability as Identifiability
from .identifiability import PredictionUncertainty as PredictionUncertainty
from .identifiability import Sloppiness as Sloppiness
from .identifiability import Symmetry as Symmetry
from .identifiability import identifiability as identifiability
from .identifiability import plot_spectrum as plot_spectrum
from .identifiability import prediction_uncertainty as prediction_uncertainty
from .identifiability import sloppiness as sloppiness
from .inference.fit import ConvergenceWarning as ConvergenceWarning
from .inference.fit import FitResult as FitResult
from .inference.fit import fit as fit
from .inference.intervals import DeltaResult as DeltaResult
from .inference.intervals import Intervals as Intervals
from .inference.intervals import PredictionBand as PredictionBand
from .inference.intervals import delta_method as delta_method
from .inference.intervals import prediction_variance as prediction_variance
from .inference.intervals import wald_intervals as wald_intervals
from .inference.profile import Profile as Profile
from .inference.profile import ProfileLikelihood as ProfileLikelihood
from .inference.profile import profile_likelihood as profile_likelihood
from .inference.study import PrecisionReport as PrecisionReport
from .inference.study import StudyResult as StudyResult
from .inference.study import precision_report as precision_report
from .inference.study import simulate_data as simulate_data
from .inference.study import simulate_study as simulate_study
from .information.fim import Eigen as Eigen
from .information.fim import FisherInformation as FisherInformation
from .information.fim import fisher_information as fisher_information
from .information.observed import observed_information as observed_information
from .information.observed import opg_information as opg_information
from .information.observed import sandwich_covariance as sandwich_covariance
from .likelihood import hessian as hessian
from .likelihood import loglike as loglike
from .likelihood import score as score
from .models.analytic import AnalyticModel as AnalyticModel
from .models.base import AbstractModel as AbstractModel
from .models.ode import ODEModel as ODEModel
from .noise import Combined as Combined
from .noise import Custom as Custom
from .noise import Gaussian as Gaussian
from .noise import Laplace as Laplace
from .noise import LogNormal as LogNormal
from .noise import NegativeBinomial as NegativeBinomial
from .noise import NoiseModel as NoiseModel
from .noise import Poisson as Poisson
from .noise import Proportional as Proportional
from .noise import StudentT as StudentT
from .oed import AOptimal as AOptimal
from .oed import ApproximateDesign as ApproximateDesign
from .oed import COptimal as COptimal
from .oed import Criterion as Criterion
from .oed import DesignComparison as DesignComparison
from .oed import DesignGradient as DesignGradient
from .oed import DesignResult as DesignResult
from .oed import DesignSpace as DesignSpace
from .oed import DOptimal as DOptimal
from .oed import DsOptimal as DsOptimal
from .oed import EOptimal as EOptimal
from .oed import EquivalenceCertificate as EquivalenceCertificate
from .oed import Expected as Expected
from .oed import ExpectedDet as ExpectedDet
from .oed import ExpectedLogDet as ExpectedLogDet
from .oed import GroupSpace as GroupSpace
from .oed import InformationTrace as InformationTrace
from .oed import ModifiedEOptimal as ModifiedEOptimal
from .oed import PetabDesignResult as PetabDesignResult
from .oed import PetabDesignSpace as PetabDesignSpace
from .oed import design_gradient as design_gradient
from .oed import equivalence_check as equivalence_check
from .oed import evaluate_design as evaluate_design
from .oed import optimal_weights as optimal_weights
from .oed import optimize_design as optimize_design
from .prediction import Prediction as Prediction
from .prediction import parameter_names as parameter_names
from .prediction import predict as predict
from .prediction import sensitivities as sensitivities

# Loaded on first use: these need sympy (and python-libsbml / petab), which take a third of a second
# or more to import, and most sessions never touch them.
_LAZY = {
    "StructuralIdentifiability": "fimkit.identifiability",
    "structural_identifiability": "fimkit.identifiability",
    "PetabProblem": "fimkit.models.petab",
    "lint_petab": "fimkit.models.petab",
    "load_petab": "fimkit.models.petab",
    "SBMLModel": "fimkit.models.sbml",
    "load_sbml": "fimkit.models.sbml",
    "SymbolicModel": "fimkit.models.symbolic",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fimkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
