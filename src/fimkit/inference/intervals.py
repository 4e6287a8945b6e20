"""Wald intervals, the delta method, and the uncertainty of model predictions.

All three rest on the asymptotic normality of the maximum-likelihood estimate,
θ̂ ≈ N(θ, I(θ)⁻¹): a parameter's interval is θ̂_j ± z·sqrt([I⁻¹]_jj); a derived quantity g(θ) has
variance ∇gᵀ I⁻¹ ∇g (the delta method), and a prediction is one such derived quantity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import FimkitError, ParameterError, describe
from ..information.fim import FisherInformation
from ..models.base import resolve_theta
from ..prediction import Setup, _sensitivity_program


def _z(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise FimkitError(
            f"The 'alpha' argument must be a number in the range (0, 1). Got {describe(alpha)}."
        )
    return float(NormalDist().inv_cdf(1 - alpha / 2))


@dataclass(frozen=True)
class Intervals:
    """Wald confidence intervals, per parameter, on the parameters' natural (linear) scale.

    `se` is on the information's `scale`: for ``scale="log"`` it is the standard error of log θ and
    the interval θ̂·exp(∓z·se) is asymmetric.
    """

    names: tuple[str, ...]
    estimate: np.ndarray
    se: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    alpha: float
    scale: str

    def __getitem__(self, name: str) -> tuple[float, float]:
        if name not in self.names:
            raise ParameterError(
                f"Unknown parameter {name!r}; the parameters are {list(self.names)}."
            )
        j = self.names.index(name)
        return float(self.lower[j]), float(self.upper[j])

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {
            n: {
                "estimate": float(self.estimate[j]),
                "se": float(self.se[j]),
                "lower": float(self.lower[j]),
                "upper": float(self.upper[j]),
            }
            for j, n in enumerate(self.names)
        }


def wald_intervals(fim: FisherInformation, *, alpha: float = 0.05) -> Intervals:
    """Wald intervals θ̂_j ± z_{1−α/2}·sqrt([I⁻¹]_jj) from a Fisher information at θ̂.

    On the log scale the interval is built for log θ and mapped back: θ̂·exp(± z·se).
    A singular information raises `SingularFIMError` naming the undetermined direction.
    """
    if not isinstance(fim, FisherInformation):
        raise FimkitError(f"The 'fim' argument must be a FisherInformation. Got {describe(fim)}.")
    z = _z(alpha)
    se = np.sqrt(np.diag(fim.cov()))
    est = fim.theta
    if fim.scale == "log":
        lower, upper = est * np.exp(-z * se), est * np.exp(z * se)
    else:
        lower, upper = est - z * se, est + z * se
    return Intervals(fim.names, est, se, lower, upper, float(alpha), fim.scale)


@dataclass(frozen=True)
class DeltaResult:
    """A derived quantity g(θ̂) with its delta-method standard error and Wald interval."""

    value: np.ndarray
    se: np.ndarray
    cov: np.ndarray
    gradient: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    alpha: float

    def __float__(self) -> float:
        return float(self.value)


def delta_method(
    g: Callable[[Any], Any],
    theta: Any,
    cov: FisherInformation | Any,
    *,
    names: Sequence[str] | None = None,
    alpha: float = 0.05,
) -> DeltaResult:
    """Variance of a derived quantity g(θ) by the delta method: ∇gᵀ Cov ∇g.

    **Arguments:**
    - `g`: ``g(p)`` with `p` a dict keyed by parameter name (returns a scalar or a vector), written
      with `jax.numpy`; the gradient is exact (automatic differentiation).
    - `theta`: the estimate, a dict or a vector (linear scale).
    - `cov`: a `FisherInformation` (its inverse is used, on its scale: for ``scale="log"`` the
      gradient is taken with respect to log θ), or a covariance matrix of θ on the linear scale.
    - `names`: parameter names when `cov` is a matrix and `theta` a vector.
    - `alpha`: for the Wald interval g ± z·se.

    Example, the half-life of a one-compartment model:
    ``delta_method(lambda p: jnp.log(2) * p["V"] / p["CL"], theta, F)``.
    """
    z = _z(alpha)
    if not callable(g):
        raise FimkitError(f"The 'g' argument of delta_method must be callable. Got {describe(g)}.")
    log = False
    fim = cov if isinstance(cov, FisherInformation) else None
    if fim is not None:
        names = fim.names
        log = fim.scale == "log"
    else:
        if names is None:
            if not isinstance(theta, Mapping):
                raise ParameterError(
                    "delta_method needs parameter names: pass theta as a dict, cov as a "
                    "FisherInformation, or names=[...]."
                )
            names = tuple(theta)
        try:
            c = np.asarray(cov, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise FimkitError(
                f"The 'cov' argument must be a FisherInformation or a matrix. Got {describe(cov)}."
            ) from exc
        if c.shape != (len(names), len(names)) or not np.all(np.isfinite(c)):
            raise FimkitError(
                f"The 'cov' argument must be a finite ({len(names)}, {len(names)}) matrix for "
                f"parameters {list(names)}. Got shape {c.shape}."
            )
    names = tuple(names)
    # Parameters of `theta` that the covariance does not cover stay fixed at their values.
    fixed: dict[str, Any] = {}
    if isinstance(theta, Mapping) and set(names) <= set(theta):
        fixed = {k: float(v) for k, v in theta.items() if k not in names}
        theta = {n: theta[n] for n in names}
    th = resolve_theta(names, theta, positive=log)

    def h(u):
        x = jnp.exp(u) if log else u
        return jnp.asarray(g({**fixed, **dict(zip(names, x, strict=True))}), dtype=jnp.float64)

    u0 = jnp.log(th) if log else jnp.asarray(th)
    value = np.asarray(h(u0))
    grad = np.asarray(jax.jacfwd(h)(u0)).reshape(value.size, len(names))
    var = fim.cov_of(grad) if fim is not None else grad @ c @ grad.T
    se = np.sqrt(np.clip(np.diag(var), 0, None)).reshape(value.shape)
    return DeltaResult(value, se, var, grad, value - z * se, value + z * se, float(alpha))


@dataclass(frozen=True)
class PredictionBand:
    """Predictions with delta-method standard errors and pointwise Wald bands, per design group."""

    times: tuple[np.ndarray, ...]
    outputs: tuple[tuple[str, ...], ...]
    mean: tuple[np.ndarray, ...]
    se: tuple[np.ndarray, ...]
    lower: tuple[np.ndarray, ...]
    upper: tuple[np.ndarray, ...]
    alpha: float


def prediction_variance(
    model: Any, theta: Any, design: Any, *, fim: FisherInformation, alpha: float = 0.05
) -> PredictionBand:
    """The variance of model predictions at new times, ∇μᵀ I⁻¹ ∇μ, from a Fisher information.

    **Arguments:**
    - `model`, `theta` (all model parameters), `design` (the new times/outputs/doses).
    - `fim`: the information of the experiment the parameters are (to be) estimated from; its
      parameters are the uncertain ones, the others stay fixed at `theta`.
    """
    z = _z(alpha)
    if not isinstance(fim, FisherInformation):
        raise FimkitError(f"The 'fim' argument must be a FisherInformation. Got {describe(fim)}.")
    setup = Setup.build(model, design, None, need_noise=False)
    th = setup.theta(theta)
    # Noise parameters do not move the predictions: their columns of the gradient are zero.
    keep = [j for j, n in enumerate(fim.names) if n in setup.names]
    idx = [setup.names.index(fim.names[j]) for j in keep]
    args = (th, setup.times(), setup.dose_values)
    S, mu, status = setup.compiled("sensitivities", _sensitivity_program)(*args)
    setup.check_status(status, th)
    G = np.zeros((np.shape(S)[0], fim.size))
    G[:, keep] = np.asarray(S)[:, idx] * (th[idx] if fim.scale == "log" else 1.0)
    var = np.diag(fim.cov_of(G))
    se_flat = np.sqrt(np.clip(var, 0, None))
    mu = np.asarray(mu)
    means, ses, start = [], [], 0
    for gi, g in enumerate(setup.groups):
        n_out = len(setup.output_index[gi])
        size = g.times.size * n_out
        means.append(mu[start : start + size].reshape(g.times.size, n_out))
        ses.append(se_flat[start : start + size].reshape(g.times.size, n_out))
        start += size
    return PredictionBand(
        setup.times(),
        tuple(setup.output_names(i) for i in range(len(setup.groups))),
        tuple(means),
        tuple(ses),
        tuple(m - z * s for m, s in zip(means, ses, strict=True)),
        tuple(m + z * s for m, s in zip(means, ses, strict=True)),
        float(alpha),
    )


__all__ = [
    "DeltaResult",
    "Intervals",
    "PredictionBand",
    "delta_method",
    "prediction_variance",
    "wald_intervals",
]
