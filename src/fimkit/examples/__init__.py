"""Bundled example models with their nominal parameters and designs.

Each function returns a small `Example` (model, theta, design, noise) so that a user, a test or the
CLI can run it in one line: ``ex = fk.examples.pk_bolus(); fk.fisher_information(ex.model, ex.theta,
ex.design, noise=ex.noise)``.
"""

from .models import Example as Example
from .models import kinase_cascade as kinase_cascade
from .models import pk_bolus as pk_bolus
from .models import pk_bolus_ode as pk_bolus_ode
from .models import pk_oral as pk_oral
from .models import pk_oral_ode as pk_oral_ode
from .models import pk_two_compartment as pk_two_compartment
from .models import rooney_biegler as rooney_biegler
