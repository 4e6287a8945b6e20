"""Robust design criteria: the expected value of a criterion over a prior distribution of θ.

A locally optimal design is optimal at one guess of θ. When θ is uncertain, average the criterion
over samples θ₁ … θ_S drawn from a prior:

- `ExpectedLogDet` (E[log det F], "ED" in much of the pharmacometric literature, also written
  E(log det)): the mean of log det F(θ_s).
- `ExpectedDet` (ED in the strict sense, E[det F]): reported as log E[det F] = log mean_s det F(θ_s),
  computed with log-sum-exp, because det F under- and overflows.
- `Expected(criterion)`: the mean of any other criterion's value (E[tr F⁻¹], E[λ_min], …).

The samples are evaluated in one vmapped batch of the compiled program: S samples cost one call, not
S calls, and new samples of the same count never recompile. A prior information (``prior=F0``) is
added to F(θ_s) for every sample.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import FimkitError, ParameterError, describe
from .criteria import Context, Criterion, DOptimal, as_criterion


def _check_samples(samples: Any, owner: str) -> Any:
    if isinstance(samples, Mapping):
        if not samples:
            raise ParameterError(f"The 'samples' of {owner} must not be empty.")
        out = {}
        sizes = set()
        for k, v in samples.items():
            try:
                a = np.asarray(v, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError) as exc:
                raise ParameterError(
                    f"The 'samples' of {owner} must map names to arrays of numbers. Got "
                    f"{describe(v)} for {k!r}."
                ) from exc
            if not np.all(np.isfinite(a)):
                raise ParameterError(f"The 'samples' of {owner} for {k!r} must be finite.")
            out[str(k)] = a
            sizes.add(a.size)
        if len(sizes) != 1 or 0 in sizes:
            raise ParameterError(
                f"The 'samples' of {owner} must give the same, non-zero number of samples for every "
                f"parameter. Got sizes { {k: v.size for k, v in out.items()} }."
            )
        return out
    try:
        a = np.asarray(samples, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(
            f"The 'samples' of {owner} must be a dict of arrays keyed by parameter name, or an "
            f"(S, p) array. Got {describe(samples)}."
        ) from exc
    if a.ndim != 2 or a.shape[0] == 0 or not np.all(np.isfinite(a)):
        raise ParameterError(
            f"The 'samples' of {owner} must be a finite (S, p) array with one row per sample. "
            f"Got shape {a.shape}."
        )
    return a


class RobustCriterion(abc.ABC):
    """A criterion averaged over samples of θ. Members provide `base` and `aggregate`."""

    samples: Any
    name: str

    @property
    @abc.abstractmethod
    def base(self) -> Criterion:
        """The criterion evaluated at each sample."""

    @abc.abstractmethod
    def aggregate(self, values: Any) -> Any:
        """The robust value from the per-sample values (a JAX array of shape (S,))."""

    @property
    def maximize(self) -> bool:
        return self.base.maximize

    @property
    def requires_full_rank(self) -> bool:
        return self.base.requires_full_rank

    @property
    def n_samples(self) -> int:
        s = self.samples
        return next(iter(s.values())).size if isinstance(s, Mapping) else s.shape[0]

    def bind(self, ctx: Context) -> RobustCriterion:
        self.base.bind(ctx)
        return self

    def sample_matrix(
        self, all_names: Sequence[str], theta: np.ndarray, *, positive: bool
    ) -> np.ndarray:
        """The samples as an (S, len(all_names)) array; parameters without samples stay at θ."""
        all_names = tuple(all_names)
        s = self.samples
        if isinstance(s, Mapping):
            unknown = [k for k in s if k not in all_names]
            if unknown:
                raise ParameterError(
                    f"The 'samples' of {type(self).__name__} name unknown parameters {unknown}; "
                    f"the parameters are {list(all_names)}."
                )
            out = np.tile(np.asarray(theta, dtype=np.float64), (self.n_samples, 1))
            for k, v in s.items():
                out[:, all_names.index(k)] = v
        else:
            if s.shape[1] != len(all_names):
                raise ParameterError(
                    f"The 'samples' array of {type(self).__name__} must have one column per "
                    f"parameter {list(all_names)}. Got shape {s.shape}."
                )
            out = np.array(s, dtype=np.float64)
        if positive and np.any(out <= 0):
            bad = sorted({all_names[j] for j in np.flatnonzero((out <= 0).any(axis=0))})
            raise ParameterError(
                f"The 'samples' of {type(self).__name__} must be positive on the log scale "
                f"(scale='log'). Got values <= 0 for {bad}."
            )
        return out

    def value_batch(self, Ms: Any, thetas: Any, ctx: Context) -> Any:
        values = jax.vmap(lambda M, th: self.base.value(M, th, ctx))(Ms, thetas)
        return self.aggregate(values)

    def to_utility(self, v: Any) -> Any:
        return self.base.to_utility(v)

    def efficiency(self, v1: float, v0: float, ctx: Context) -> float:
        return self.base.efficiency(v1, v0, ctx)

    @property
    def key(self) -> tuple:
        return (type(self).__name__, self.base.key, self.n_samples)

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True, eq=False)
class Expected(RobustCriterion):
    """The expected value of `criterion` over samples of θ: (1/S) Σ_s φ(F(θ_s)).

    **Arguments:**
    - `criterion`: a criterion or its name (``"D"``, ``"A"``, ``"E"``, …).
    - `samples`: a dict keyed by parameter name of equally long arrays (parameters not given stay at
      the nominal θ), or an (S, p) array in parameter order.
    """

    criterion: Any
    samples: Any

    def __post_init__(self) -> None:
        object.__setattr__(self, "criterion", as_criterion(self.criterion))
        if isinstance(self.criterion, RobustCriterion):
            raise FimkitError("The 'criterion' of Expected must not itself be robust.")
        object.__setattr__(self, "samples", _check_samples(self.samples, "Expected"))

    @property
    def base(self) -> Criterion:
        return self.criterion

    @property
    def name(self) -> str:
        return f"E[{self.criterion.label}]"

    def aggregate(self, values):
        return jnp.mean(values)


@dataclass(frozen=True, eq=False)
class ExpectedLogDet(RobustCriterion):
    """E[log det F]: the mean over samples of θ of log det F(θ_s) (maximise).

    The usual "ED-optimal" design of PopED and PFIM (their ``ofv`` for ED is E[log det] by default).
    Efficiency as for D: exp((v₁ − v₀)/p).
    """

    samples: Any
    name: str = "E[log det]"

    def __post_init__(self) -> None:
        object.__setattr__(self, "samples", _check_samples(self.samples, "ExpectedLogDet"))

    @property
    def base(self) -> Criterion:
        return DOptimal()

    def aggregate(self, values):
        return jnp.mean(values)


@dataclass(frozen=True, eq=False)
class ExpectedDet(RobustCriterion):
    """ED in the strict sense, E[det F], reported as log E[det F] (maximise).

    log E[det F] = logsumexp_s(log det F(θ_s)) − log S, so that determinants far outside the
    floating-point range still average correctly. Samples with a singular F contribute det F = 0.
    Efficiency: exp((v₁ − v₀)/p).
    """

    samples: Any
    name: str = "log E[det]"

    def __post_init__(self) -> None:
        object.__setattr__(self, "samples", _check_samples(self.samples, "ExpectedDet"))

    @property
    def base(self) -> Criterion:
        return DOptimal()

    @property
    def requires_full_rank(self) -> bool:
        return False

    def aggregate(self, values):
        values = jnp.where(jnp.isnan(values), -jnp.inf, values)
        return jax.scipy.special.logsumexp(values) - jnp.log(values.shape[0])


def lognormal_samples(
    theta: Mapping[str, float], cv: float | Mapping[str, float], n: int = 1000, *, seed: int = 0
) -> dict[str, np.ndarray]:
    """Samples of θ from independent log-normal priors with median θ and coefficient of variation `cv`.

    θ_j · exp(ω_j z), z ~ N(0, 1), ω_j² = log(1 + cv_j²). `cv` is one number for all parameters
    or a dict keyed by name (parameters without an entry are not sampled). Returns a dict of arrays,
    ready for `Expected`, `ExpectedLogDet` or `ExpectedDet`.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise FimkitError(
            f"The 'n' argument of lognormal_samples must be an integer >= 1. Got {describe(n)}."
        )
    cvs = dict(cv) if isinstance(cv, Mapping) else dict.fromkeys(theta, cv)
    unknown = [k for k in cvs if k not in theta]
    if unknown:
        raise ParameterError(
            f"The 'cv' of lognormal_samples names unknown parameters {unknown}; theta has {list(theta)}."
        )
    rng = np.random.default_rng(seed)
    out = {}
    for k, c in cvs.items():
        if isinstance(c, bool) or not isinstance(c, int | float | np.number) or not c > 0:
            raise FimkitError(
                f"The 'cv' of lognormal_samples must be > 0. Got {describe(c)} for {k!r}."
            )
        t = float(theta[k])
        if t <= 0:
            raise ParameterError(f"lognormal_samples needs positive parameters. Got {k}={t!r}.")
        omega = np.sqrt(np.log1p(float(c) ** 2))
        out[k] = t * np.exp(omega * rng.standard_normal(int(n)))
    return out


__all__ = [
    "Expected",
    "ExpectedDet",
    "ExpectedLogDet",
    "RobustCriterion",
    "lognormal_samples",
]
