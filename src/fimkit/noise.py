"""Noise models for Gaussian measurements: the variance of each observation.

Each noise parameter is either a fixed number or the name of a parameter (a string). Named noise
parameters join the Fisher information's parameters after the model's own, unless the model already
has a parameter of that name. A parameter may be given per output with a dict ``{"C": 0.1, "E": 2.0}``.

The variances, and with them the Fisher information, are exact: when the variance depends on the
parameters (a proportional error through the prediction, or an estimated σ), the information includes
``½ tr(Σ⁻¹ ∂Σ/∂θi Σ⁻¹ ∂Σ/∂θj)`` as well as the mean term.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np

from .errors import NoiseError, describe

Spec = float | str | tuple[tuple[str, float | str], ...]


def _spec(value: Any, argument: str, owner: str) -> Spec:
    """Normalise a noise parameter: a positive number, a parameter name, or a per-output dict."""

    def one(v: Any, where: str) -> float | str:
        if isinstance(v, str):
            if not v:
                raise NoiseError(f"The '{argument}' of {owner} must not be an empty name{where}.")
            return v
        try:
            x = float(v)
        except (TypeError, ValueError) as exc:
            raise NoiseError(
                f"The '{argument}' of {owner} must be a number > 0 or a parameter name{where}. "
                f"Got {describe(v)}."
            ) from exc
        if not np.isfinite(x) or x <= 0:
            raise NoiseError(
                f"The '{argument}' of {owner} must be a finite number > 0{where}. Got {x!r}."
            )
        return x

    if isinstance(value, Mapping):
        if not value:
            raise NoiseError(f"The '{argument}' of {owner} must not be an empty dict.")
        return tuple((str(k), one(v, f" (output {k!r})")) for k, v in value.items())
    return one(value, "")


def _names(spec: Spec) -> tuple[str, ...]:
    if isinstance(spec, str):
        return (spec,)
    if isinstance(spec, tuple):
        return tuple(v for _, v in spec if isinstance(v, str))
    return ()


class NoiseModel(abc.ABC):
    """The variance of Gaussian observations, as a function of the prediction and the parameters."""

    @abc.abstractmethod
    def _specs(self) -> tuple[tuple[str, Spec], ...]:
        """(argument name, spec) pairs of the noise parameters."""

    @abc.abstractmethod
    def _variance(self, f: Any, values: dict[str, Any]) -> Any:
        """Variance given the prediction `f` and the per-column noise parameter values."""

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of the noise parameters that are parameters (in order of first appearance)."""
        out: list[str] = []
        for _, spec in self._specs():
            out.extend(n for n in _names(spec) if n not in out)
        return tuple(out)

    def validate(self, outputs: Sequence[str]) -> None:
        """Check that per-output dicts name exactly the model's outputs."""
        for arg, spec in self._specs():
            if isinstance(spec, tuple):
                keys = [k for k, _ in spec]
                unknown = [k for k in keys if k not in outputs]
                missing = [o for o in outputs if o not in keys]
                if unknown or missing:
                    raise NoiseError(
                        f"The '{arg}' of {type(self).__name__} is given per output, but "
                        f"{'names unknown outputs ' + str(unknown) if unknown else ''}"
                        f"{' and ' if unknown and missing else ''}"
                        f"{'misses outputs ' + str(missing) if missing else ''}; "
                        f"the model's outputs are {list(outputs)}."
                    )

    def variance(self, f: Any, p: Mapping[str, Any], outputs: Sequence[str]) -> Any:
        """Variances of observations with predictions `f` (shape (n_times, len(outputs)))."""
        values: dict[str, Any] = {}
        for arg, spec in self._specs():
            cols = []
            for o in outputs:
                v = dict(spec)[o] if isinstance(spec, tuple) else spec
                cols.append(p[v] if isinstance(v, str) else jnp.asarray(v))
            values[arg] = jnp.stack(cols)
        return self._variance(f, values)

    def __str__(self) -> str:
        args = ", ".join(f"{a}={s!r}" for a, s in self._specs())
        return f"{type(self).__name__}({args})"


@dataclass(frozen=True)
class Gaussian(NoiseModel):
    """Additive Gaussian noise: ``y = f + ε``, ``ε ~ N(0, σ²)``.

    `sigma` is a number (known σ), a parameter name (σ estimated: ``Gaussian(sigma="sigma")``), or a
    dict of either keyed by output name.
    """

    sigma: Any

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _spec(self.sigma, "sigma", "Gaussian"))

    def _specs(self):
        return (("sigma", self.sigma),)

    def _variance(self, f, values):
        return jnp.broadcast_to(values["sigma"] ** 2, f.shape)


@dataclass(frozen=True)
class Proportional(NoiseModel):
    """Proportional (constant coefficient of variation) noise: ``Var(y) = (b·f)²``.

    The variance vanishes where the prediction does: do not sample where f = 0 (e.g. at a dose time
    of an oral model), or use `Combined`.
    """

    b: Any

    def __post_init__(self) -> None:
        object.__setattr__(self, "b", _spec(self.b, "b", "Proportional"))

    def _specs(self):
        return (("b", self.b),)

    def _variance(self, f, values):
        return (values["b"] * f) ** 2


@dataclass(frozen=True)
class Combined(NoiseModel):
    """Additive plus proportional noise, in one of two forms that must be chosen explicitly.

    - ``form="variance"``: ``Var(y) = a² + b²·f²`` (independent additive and proportional errors;
      NONMEM's and PopED's usual combined model).
    - ``form="sd"``: ``Var(y) = (a + b·|f|)²`` (standard deviations add; Monolix's "combined1").
    """

    a: Any
    b: Any
    form: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", _spec(self.a, "a", "Combined"))
        object.__setattr__(self, "b", _spec(self.b, "b", "Combined"))
        if self.form not in ("variance", "sd"):
            raise NoiseError(
                "The 'form' argument of Combined must be 'variance' (a² + b²f²) or 'sd' "
                f"((a + b|f|)²). Got {describe(self.form)}."
            )

    def _specs(self):
        return (("a", self.a), ("b", self.b))

    def _variance(self, f, values):
        a, b = values["a"], values["b"]
        if self.form == "variance":
            return a**2 + (b * f) ** 2
        return (a + b * jnp.abs(f)) ** 2

    def __str__(self) -> str:
        return f"Combined(a={self.a!r}, b={self.b!r}, form={self.form!r})"


def as_noise(noise: Any) -> NoiseModel:
    if isinstance(noise, NoiseModel):
        return noise
    if noise is None:
        raise NoiseError(
            "The 'noise' argument is required: e.g. noise=fk.Gaussian(sigma=0.1). Got None."
        )
    if isinstance(noise, int | float) and not isinstance(noise, bool):
        return Gaussian(sigma=noise)
    raise NoiseError(
        "The 'noise' argument must be a noise model (Gaussian, Proportional, Combined) or a number "
        f"(the σ of additive Gaussian noise). Got {describe(noise)}."
    )


__all__ = ["Combined", "Gaussian", "NoiseModel", "Proportional", "as_noise"]
