"""What every model provides, and the handling of parameter vectors shared by all entry points.

A model maps (parameters, sampling times, dosing) to predicted outputs. fimkit never looks inside:
sensitivities, Fisher information and everything after are JAX transformations of that one map.
User functions receive the parameters as a dict keyed by name, so a model reads like its equations.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import _jax  # noqa: F401  (float64 and the compilation cache)
from ..errors import ModelError, ParameterError, describe

# Status codes a simulation returns from inside compiled code (0 is success).
STATUS_OK = 0
STATUS_MAX_STEPS = 1
STATUS_SOLVER_FAILED = 2
STATUS_NONFINITE = 3

STATUS_MESSAGES = {
    STATUS_MAX_STEPS: "the ODE solver reached its maximum number of steps (the system is stiff, "
    "the time span long, or the solution blows up and every step is rejected)",
    STATUS_SOLVER_FAILED: "the ODE solver failed (step size collapsed or the implicit solve diverged)",
    STATUS_NONFINITE: "the simulated states or outputs are not finite (NaN or infinity)",
}

STATUS_ADVICE = {
    STATUS_MAX_STEPS: "Increase `max_steps`, use a solver for stiff systems (solver='rodas5p' or "
    "'kvaerno5') if the system is stiff, or check the parameter values for a solution that escapes "
    "to infinity.",
    STATUS_SOLVER_FAILED: "Check the parameter values; for stiff systems use solver='rodas5p' or "
    "'kvaerno5'.",
    STATUS_NONFINITE: "Check the parameter values and the model equations for divisions by zero, "
    "overflow or logarithms of non-positive numbers.",
}


def check_names(kind: str, names: Sequence[str]) -> tuple[str, ...]:
    """Validate a list of names (parameters, states, outputs): non-empty strings, no duplicates."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ModelError(
            f"The '{kind}' argument must be a list of names (strings). Got {describe(names)} instead."
        )
    names = tuple(names)
    for n in names:
        if not isinstance(n, str) or not n:
            raise ModelError(
                f"The '{kind}' argument must hold non-empty strings. Got {describe(n)} in {names}."
            )
    seen: set[str] = set()
    dupes = [n for n in names if n in seen or seen.add(n)]
    if dupes:
        raise ModelError(f"The '{kind}' argument has duplicate names {dupes}. Got {list(names)}.")
    return names


def resolve_theta(
    names: Sequence[str], theta: Any, *, argument: str = "theta", positive: bool = False
) -> np.ndarray:
    """Turn `theta` (a dict keyed by name, or an array in `names` order) into a float64 vector.

    Raises `ParameterError` naming what is wrong: unknown or missing names, a wrong length,
    non-finite values, or non-positive values where `positive` (a log scale) requires them.
    """
    names = tuple(names)
    if isinstance(theta, dict | Mapping):
        try:  # the common case first: exactly the names (a repeated call in a loop)
            raw = [theta[n] for n in names] if len(theta) == len(names) else None
        except KeyError:
            raw = None
        if raw is None:
            unknown = [k for k in theta if k not in names]
            missing = [n for n in names if n not in theta]
            if unknown:
                raise ParameterError(
                    f"The '{argument}' argument has unknown parameter names {unknown}; "
                    f"the parameters are {list(names)}."
                )
            raise ParameterError(
                f"The '{argument}' argument is missing parameters {missing}; "
                f"the parameters are {list(names)}."
            )
        try:
            try:
                values = np.array(raw)
            except ValueError:  # a mix of numbers and one-element arrays
                values = np.array([float(np.asarray(v)) for v in raw], dtype=np.float64)
            if values.dtype.kind not in "biuf":  # None, strings, objects: not numbers
                raise TypeError("not a number")
            values = values.astype(np.float64, copy=False)
            if values.shape != (len(names),):  # e.g. values given as one-element arrays
                values = np.array([float(np.asarray(v)) for v in raw], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ParameterError(
                f"The '{argument}' argument must map names to numbers. Got {describe(theta)}."
            ) from exc
    else:
        try:
            values = np.asarray(theta, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ParameterError(
                f"The '{argument}' argument must be a dict of parameter values or a vector of "
                f"length {len(names)} in the order {list(names)}. Got {describe(theta)}."
            ) from exc
        if values.ndim != 1 or values.shape[0] != len(names):
            raise ParameterError(
                f"The '{argument}' argument must have length {len(names)} (parameters "
                f"{list(names)}). Got shape {values.shape}: {describe(theta)}."
            )
    finite = np.isfinite(values)
    if not finite.all():
        bad = [n for n, ok in zip(names, finite.tolist(), strict=True) if not ok]
        raise ParameterError(
            f"The '{argument}' argument must be finite. Got non-finite values for {bad}: "
            f"{dict(zip(names, values.tolist(), strict=True))}."
        )
    if positive and (values <= 0).any():
        bad = {n: float(v) for n, v in zip(names, values, strict=True) if v <= 0}
        if bad:
            raise ParameterError(
                f"The '{argument}' argument must be positive on the log scale (scale='log'). "
                f"Got {bad}. Use scale='lin' for parameters that can be zero or negative."
            )
    return values


class AbstractModel(abc.ABC):
    """A model: named parameters, named outputs, and a map from (parameters, times, doses) to outputs.

    Concrete models (`AnalyticModel`, `ODEModel`) implement `_simulate`. Models are immutable and
    compare by identity: compiled programs are cached on the instance.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_cache") or not hasattr(self, "_frozen"):
            object.__setattr__(self, name, value)
            return
        raise AttributeError(f"{type(self).__name__} is immutable; build a new model instead.")

    def _freeze(self) -> None:
        object.__setattr__(self, "_cache", {})
        object.__setattr__(self, "_frozen", True)

    @property
    @abc.abstractmethod
    def params(self) -> tuple[str, ...]:
        """Parameter names, in the order of `theta` vectors."""

    @property
    @abc.abstractmethod
    def outputs(self) -> tuple[str, ...]:
        """Output names, in the order `fn`/`observe` returns them."""

    @property
    def states(self) -> tuple[str, ...]:
        """State names (empty for models without states)."""
        return ()

    @property
    def supports_doses(self) -> bool:
        return False

    @abc.abstractmethod
    def _simulate(self, p: dict, times: Any, schedule: Any) -> tuple[Any, Any]:
        """Outputs at `times` (shape (n_times, n_outputs)) and an integer status (0 = success).

        `p` maps every parameter name to a traced scalar; `schedule` is a `DoseSchedule` or None.
        Runs inside `jax.jit`; must be pure.
        """

    def _solver_info(self) -> dict[str, Any]:
        return {}

    @property
    def name(self) -> str:
        return type(self).__name__


__all__ = ["AbstractModel", "check_names", "resolve_theta"]
