"""Optimal experimental design: criteria, design spaces, optimisers, robust designs.

See ``docs/design_optimization.md``.
"""

from .approximate import ApproximateDesign as ApproximateDesign
from .approximate import EquivalenceCertificate as EquivalenceCertificate
from .approximate import equivalence_check as equivalence_check
from .approximate import optimal_weights as optimal_weights
from .compare import DesignComparison as DesignComparison
from .compare import DesignGradient as DesignGradient
from .compare import design_gradient as design_gradient
from .compare import evaluate_design as evaluate_design
from .criteria import AOptimal as AOptimal
from .criteria import COptimal as COptimal
from .criteria import Criterion as Criterion
from .criteria import DOptimal as DOptimal
from .criteria import DsOptimal as DsOptimal
from .criteria import EOptimal as EOptimal
from .criteria import InformationTrace as InformationTrace
from .criteria import ModifiedEOptimal as ModifiedEOptimal
from .criteria import as_criterion as as_criterion
from .criteria import criterion_value as criterion_value
from .optimize import DesignResult as DesignResult
from .optimize import StartRecord as StartRecord
from .optimize import optimize_design as optimize_design
from .petab_design import PetabDesignResult as PetabDesignResult
from .petab_design import PetabDesignSpace as PetabDesignSpace
from .robust import Expected as Expected
from .robust import ExpectedDet as ExpectedDet
from .robust import ExpectedLogDet as ExpectedLogDet
from .robust import RobustCriterion as RobustCriterion
from .robust import lognormal_samples as lognormal_samples
from .space import DesignSpace as DesignSpace
from .space import GroupSpace as GroupSpace
