"""Exceptions and warnings raised by fimkit.

Every user mistake is reported at the boundary with a `FimkitError` (a `ValueError`) whose message
names the argument, the constraint and the value received. Failures that happen inside compiled code
(an ODE solve that does not finish, a singular Fisher information) are carried out as status values
and raised here with advice on what to do.
"""

from __future__ import annotations

from typing import Any


class FimkitError(ValueError):
    """Base class of every error fimkit raises for a user's input or a failed computation."""


class ParameterError(FimkitError):
    """Unknown parameter names, a `theta` of the wrong length, non-finite or out-of-domain values."""


class DesignError(FimkitError):
    """An invalid design: negative or non-finite times, unknown outputs, doses into unknown states."""


class NoiseError(FimkitError):
    """An invalid noise model: σ ≤ 0, an unknown form, a noise parameter that is not a parameter."""


class ModelError(FimkitError):
    """A model definition that cannot work: wrong output shapes, unknown state names, duplicates."""


class DataError(FimkitError):
    """Data that cannot be used: missing or non-finite values, values outside the noise model's
    support, shapes that do not fit the design."""


class FitError(FimkitError):
    """A fit that cannot start (bad start values, bounds) or that did not converge when asked to."""


class SolverError(FimkitError):
    """An ODE solve failed (maximum steps reached, a non-finite state, a step size that collapsed)."""


class SingularFIMError(FimkitError):
    """The Fisher information is singular (or numerically so) where an inverse was asked for."""

    def __init__(self, message: str, null_directions: Any = None):
        super().__init__(message)
        self.null_directions = null_directions


class FimkitWarning(UserWarning):
    """Base class of fimkit's warnings."""


class IdentifiabilityWarning(FimkitWarning):
    """A Fisher information is close to singular: some parameter combinations are barely informed."""


def describe(value: Any) -> str:
    """A short, readable rendering of a received value for error messages."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} (type {type(value).__name__})"


__all__ = [
    "DataError",
    "DesignError",
    "FimkitError",
    "FimkitWarning",
    "FitError",
    "IdentifiabilityWarning",
    "ModelError",
    "NoiseError",
    "ParameterError",
    "SingularFIMError",
    "SolverError",
]
