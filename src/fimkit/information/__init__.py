"""The Fisher information and its result object."""

from .fim import FisherInformation as FisherInformation
from .fim import fisher_information as fisher_information
