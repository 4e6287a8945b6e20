"""Noise models: the distribution of each observation around the model's prediction.

Gaussian family: `Gaussian` (additive), `Proportional`, `Combined`, and `LogNormal` (Gaussian on the
log scale). Others: `Poisson`, `NegativeBinomial`, `StudentT`, `Laplace`, and `Custom` for any user
log-density.

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

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

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
    """The distribution of an observation given the model's prediction f and the parameters.

    Every built-in family is written in two coordinates per observation, a location (f, or log f
    for log-normal data) and a dispersion (a variance, a scale, a size), with the per-observation
    Fisher information diagonal in them. The expected information about θ is then exact:
    I = Sᵀ diag(w_loc) S + Gᵀ diag(w_disp) G, with S = ∂loc/∂θ and G = ∂disp/∂θ.
    """

    #: Whether the expected Fisher information has a closed form for this noise model.
    closed_form: bool = True
    #: Whether the log-density is twice differentiable in the location (the Hessian form of the
    #: information, −E[∇²ℓ], needs it).
    smooth: bool = True

    @abc.abstractmethod
    def _specs(self) -> tuple[tuple[str, Spec], ...]:
        """(argument name, spec) pairs of the noise parameters."""

    def _location(self, f: Any) -> Any:
        return f

    @abc.abstractmethod
    def _dispersion(self, f: Any, values: dict[str, Any]) -> Any:
        """The dispersion coordinate (a variance for the Gaussian family) per observation."""

    def _weights(self, loc: Any, disp: Any) -> tuple[Any, Any]:
        """Fisher information per observation about (loc, disp): Gaussian N(loc, disp)."""
        return 1.0 / disp, 0.5 / disp**2

    def _logpdf(self, y: Any, loc: Any, disp: Any) -> Any:
        return -0.5 * (jnp.log(2 * jnp.pi * disp) + (y - loc) ** 2 / disp)

    def _sample(self, key: Any, loc: Any, disp: Any) -> Any:
        return loc + jnp.sqrt(disp) * jax.random.normal(key, loc.shape)

    def data_problem(self, y: np.ndarray) -> str | None:
        """Why data `y` cannot come from this noise model (None when it can)."""
        return None

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

    def values(self, p: Mapping[str, Any], outputs: Sequence[str]) -> dict[str, Any]:
        """Noise parameter values per observation, for observations of the given `outputs`."""
        unique = list(dict.fromkeys(outputs))
        index = np.asarray([unique.index(o) for o in outputs], dtype=np.int32)
        values: dict[str, Any] = {}
        for arg, spec in self._specs():
            cols = []
            for o in unique:
                v = dict(spec)[o] if isinstance(spec, tuple) else spec
                cols.append(p[v] if isinstance(v, str) else jnp.asarray(v, dtype=jnp.float64))
            values[arg] = jnp.stack(cols)[index] if cols else jnp.zeros(0)
        return values

    def location_dispersion(self, f: Any, p: Mapping[str, Any], outputs: Sequence[str]):
        """(location, dispersion) of observations with predictions `f` of `outputs` (same shape)."""
        values = self.values(p, outputs)
        return self._location(f), self._dispersion(f, values)

    def variance(self, f: Any, p: Mapping[str, Any], outputs: Sequence[str]) -> Any:
        """Variances of Gaussian observations with predictions `f` of `outputs`."""
        return self._dispersion(f, self.values(p, outputs))

    def logpdf(self, y: Any, f: Any, p: Mapping[str, Any], outputs: Sequence[str]) -> Any:
        """Log-density of each observation `y` given predictions `f` (elementwise)."""
        loc, disp = self.location_dispersion(f, p, outputs)
        return self._logpdf(y, loc, disp)

    def sample(self, key: Any, f: Any, p: Mapping[str, Any], outputs: Sequence[str]) -> Any:
        """Random observations given predictions `f` (elementwise)."""
        loc, disp = self.location_dispersion(f, p, outputs)
        return self._sample(key, loc, disp)

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

    def _dispersion(self, f, values):
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

    def _dispersion(self, f, values):
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

    def _dispersion(self, f, values):
        a, b = values["a"], values["b"]
        if self.form == "variance":
            return a**2 + (b * f) ** 2
        return (a + b * jnp.abs(f)) ** 2

    def __str__(self) -> str:
        return f"Combined(a={self.a!r}, b={self.b!r}, form={self.form!r})"


@dataclass(frozen=True)
class LogNormal(NoiseModel):
    """Log-normal observations: ``log_b(y) ~ N(log_b(f), σ²)`` (log-transformed observables).

    `base` is ``"e"`` (natural log, the default) or ``"10"``. σ is the standard deviation on that
    log scale. Data must be positive.
    """

    sigma: Any
    base: str = "e"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _spec(self.sigma, "sigma", "LogNormal"))
        if self.base not in ("e", "10"):
            raise NoiseError(
                f"The 'base' argument of LogNormal must be 'e' or '10'. Got {describe(self.base)}."
            )

    def _specs(self):
        return (("sigma", self.sigma),)

    @property
    def _log_base(self) -> float:
        return 1.0 if self.base == "e" else float(np.log(10.0))

    def _location(self, f):
        return jnp.log(f) / self._log_base

    def _dispersion(self, f, values):
        return jnp.broadcast_to(values["sigma"] ** 2, f.shape)

    def _logpdf(self, y, loc, disp):
        z = jnp.log(y) / self._log_base
        # Density of y, not of log y: the Jacobian 1 / (y ln b).
        return super()._logpdf(z, loc, disp) - jnp.log(y * self._log_base)

    def _sample(self, key, loc, disp):
        return jnp.exp(self._log_base * super()._sample(key, loc, disp))

    def data_problem(self, y):
        bad = y[~(y > 0)]
        return f"log-normal data must be > 0; got {bad[:5].tolist()}" if bad.size else None

    def __str__(self) -> str:
        return f"LogNormal(sigma={self.sigma!r}, base={self.base!r})"


@dataclass(frozen=True)
class Poisson(NoiseModel):
    """Poisson counts with mean f (the prediction must be > 0): information Sᵀ diag(1/f) S."""

    def _specs(self):
        return ()

    def _dispersion(self, f, values):
        return jnp.zeros_like(f)

    def _weights(self, loc, disp):
        return 1.0 / loc, jnp.zeros_like(loc)

    def _logpdf(self, y, loc, disp):
        return y * jnp.log(loc) - loc - gammaln(y + 1.0)

    def _sample(self, key, loc, disp):
        return jax.random.poisson(key, loc, loc.shape).astype(jnp.float64)

    def data_problem(self, y):
        bad = y[(y < 0) | (np.round(y) != y)]
        return (
            f"Poisson data must be non-negative integers; got {bad[:5].tolist()}"
            if bad.size
            else None
        )


@dataclass(frozen=True)
class NegativeBinomial(NoiseModel):
    """Negative-binomial counts with mean f and size r: ``Var(y) = f + f²/r``.

    `r` is a number or a parameter name. The expected information about the mean has the closed
    form r / (f (f + r)); the information about an estimated r has none, so with ``r`` a parameter
    use a Monte Carlo method of `fisher_information`.
    """

    r: Any

    def __post_init__(self) -> None:
        object.__setattr__(self, "r", _spec(self.r, "r", "NegativeBinomial"))

    @property
    def closed_form(self) -> bool:  # type: ignore[override]
        return not self.param_names

    def _specs(self):
        return (("r", self.r),)

    def _dispersion(self, f, values):
        return jnp.broadcast_to(values["r"], f.shape)

    def _weights(self, loc, disp):
        return disp / (loc * (loc + disp)), jnp.zeros_like(loc)

    def _logpdf(self, y, loc, disp):
        r = disp
        return (
            gammaln(y + r)
            - gammaln(r)
            - gammaln(y + 1.0)
            + r * jnp.log(r / (r + loc))
            + y * jnp.log(loc / (r + loc))
        )

    def _sample(self, key, loc, disp):
        k1, k2 = jax.random.split(key)
        rate = jax.random.gamma(k1, disp, loc.shape) * loc / disp
        return jax.random.poisson(k2, rate, loc.shape).astype(jnp.float64)

    def data_problem(self, y):
        bad = y[(y < 0) | (np.round(y) != y)]
        return (
            f"negative-binomial data must be non-negative integers; got {bad[:5].tolist()}"
            if bad.size
            else None
        )


@dataclass(frozen=True)
class StudentT(NoiseModel):
    """Student-t errors: ``y = f + s·T``, T with `df` degrees of freedom (robust to outliers).

    `sigma` (the scale s) is a number or a parameter name; `df` is a fixed number > 0. Information
    per observation: (ν+1)/((ν+3)s²) about f and 2ν/((ν+3)s²) about s.
    """

    sigma: Any
    df: float = 4.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _spec(self.sigma, "sigma", "StudentT"))
        if isinstance(self.df, bool) or not isinstance(self.df, int | float) or not self.df > 0:
            raise NoiseError(
                f"The 'df' argument of StudentT must be a number > 0. Got {describe(self.df)}."
            )

    def _specs(self):
        return (("sigma", self.sigma),)

    def _dispersion(self, f, values):
        return jnp.broadcast_to(values["sigma"], f.shape)

    def _weights(self, loc, disp):
        nu = self.df
        return (nu + 1) / ((nu + 3) * disp**2), 2 * nu / ((nu + 3) * disp**2)

    def _logpdf(self, y, loc, disp):
        nu = self.df
        z = (y - loc) / disp
        return (
            gammaln((nu + 1) / 2)
            - gammaln(nu / 2)
            - 0.5 * jnp.log(nu * jnp.pi)
            - jnp.log(disp)
            - (nu + 1) / 2 * jnp.log1p(z**2 / nu)
        )

    def _sample(self, key, loc, disp):
        return loc + disp * jax.random.t(key, self.df, loc.shape)

    def __str__(self) -> str:
        return f"StudentT(sigma={self.sigma!r}, df={self.df!r})"


@dataclass(frozen=True)
class Laplace(NoiseModel):
    """Laplace (double-exponential) errors with scale b: information 1/b² about f and about b.

    The log-density has a kink at y = f, so the Hessian form −E[∇²ℓ] does not equal the
    information; use the closed form or the score covariance.
    """

    b: Any
    smooth = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "b", _spec(self.b, "b", "Laplace"))

    def _specs(self):
        return (("b", self.b),)

    def _dispersion(self, f, values):
        return jnp.broadcast_to(values["b"], f.shape)

    def _weights(self, loc, disp):
        return 1.0 / disp**2, 1.0 / disp**2

    def _logpdf(self, y, loc, disp):
        return -jnp.log(2 * disp) - jnp.abs(y - loc) / disp

    def _sample(self, key, loc, disp):
        return loc + disp * jax.random.laplace(key, loc.shape)


@dataclass(frozen=True, eq=False)
class Custom(NoiseModel):
    """Any observation density: ``logpdf(y, f, p)`` returns the log-density of each observation.

    **Arguments:**
    - `logpdf`: ``logpdf(y, f, p)`` with `y` and `f` arrays of observations and predictions and `p`
      the parameter dict; elementwise, written with `jax.numpy`.
    - `sample`: ``sample(key, f, p)`` draws observations; needed for the Monte Carlo Fisher
      information (`method="score-covariance"` or `"neg-hessian"`), which is the only kind a custom
      density has.
    - `params`: names of the noise parameters `logpdf` reads from `p` (they join θ).
    """

    logpdf_fn: Any
    sample_fn: Any = None
    params: tuple[str, ...] = ()

    closed_form = False

    def __post_init__(self) -> None:
        if not callable(self.logpdf_fn):
            raise NoiseError(
                f"The 'logpdf' of Custom must be callable. Got {describe(self.logpdf_fn)}."
            )
        if self.sample_fn is not None and not callable(self.sample_fn):
            raise NoiseError(
                f"The 'sample' of Custom must be callable. Got {describe(self.sample_fn)}."
            )
        names = (self.params,) if isinstance(self.params, str) else tuple(self.params)
        if not all(isinstance(n, str) and n for n in names):
            raise NoiseError(f"The 'params' of Custom must be names. Got {describe(self.params)}.")
        object.__setattr__(self, "params", names)

    def _specs(self):
        return tuple((n, n) for n in self.params)

    def _dispersion(self, f, values):
        return jnp.zeros_like(f)

    def logpdf(self, y, f, p, outputs):
        return jnp.broadcast_to(jnp.asarray(self.logpdf_fn(y, f, p), dtype=jnp.float64), f.shape)

    def sample(self, key, f, p, outputs):
        if self.sample_fn is None:
            raise NoiseError(
                "Custom noise needs sample=... (a function sample(key, f, p)) to simulate data or "
                "to estimate the Fisher information by Monte Carlo."
            )
        return jnp.asarray(self.sample_fn(key, f, p), dtype=jnp.float64).reshape(f.shape)

    def __str__(self) -> str:
        name = getattr(self.logpdf_fn, "__name__", "logpdf")
        return f"Custom({name}, params={list(self.params)})"


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
        "The 'noise' argument must be a noise model (Gaussian, Proportional, Combined, LogNormal, "
        "Poisson, NegativeBinomial, StudentT, Laplace, Custom) or a number "
        f"(the σ of additive Gaussian noise). Got {describe(noise)}."
    )


__all__ = [
    "Combined",
    "Custom",
    "Gaussian",
    "Laplace",
    "LogNormal",
    "NegativeBinomial",
    "NoiseModel",
    "Poisson",
    "Proportional",
    "StudentT",
    "as_noise",
]
