"""The Kullback–Leibler divergence between the data distributions of two parameter values.

D(θ1 ‖ θ2) = E_θ1[log p(y | θ1) − log p(y | θ2)] sums over independent observations (each group of n
subjects counts n times). It is exact in closed form for the Gaussian family (additive, proportional,
combined and log-normal noise: a Gaussian in the location coordinate, and KL is invariant under the
log transform) and for Poisson counts; for every other noise model it is a Monte Carlo average over
data simulated at θ1, with its standard error.

Beside it, the quadratic approximation ½ dθᵀ I(θ1) dθ from the Fisher information
(BACKGROUND.md: "the KL divergence between nearby models"); the ratio of the two tends to 1 at the
rate O(|dθ|).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import FimkitError, describe
from ..information.fim import _check_scale, fisher_information
from ..noise import Combined, Gaussian, LogNormal, Poisson, Proportional
from ..prediction import Setup, _predict_program
from ..report.tables import Table, fmt

GAUSSIAN_FAMILY = (Gaussian, Proportional, Combined, LogNormal)
METHODS = ("auto", "exact", "monte-carlo")


@dataclass(frozen=True, eq=False)
class KLDivergence:
    """D(θ1 ‖ θ2) with the quadratic approximation from the Fisher information beside it.

    **Fields:**
    - `value`: the divergence (nats).
    - `standard_error`: the Monte Carlo standard error (None when exact).
    - `method`: how `value` was computed, in words.
    - `quadratic`: ½ dθᵀ I(θ1) dθ, with dθ and I on `scale`.
    - `names`, `theta1`, `theta2` (linear scale), `scale`.
    - `per_observation`: the exact divergence of each observation (flattened design order,
      each already multiplied by its group's n); None for Monte Carlo.
    """

    value: float
    standard_error: float | None
    method: str
    quadratic: float
    names: tuple[str, ...]
    theta1: np.ndarray
    theta2: np.ndarray
    scale: str
    per_observation: np.ndarray | None = None

    @property
    def ratio(self) -> float:
        """value / quadratic: tends to 1 as θ2 → θ1."""
        return self.value / self.quadratic if self.quadratic > 0 else float("nan")

    def summary(self) -> Table:
        rows = tuple(
            (n, fmt(self.theta1[j]), fmt(self.theta2[j])) for j, n in enumerate(self.names)
        )
        se = "" if self.standard_error is None else f" ± {self.standard_error:.3g} (MC s.e.)"
        notes = (
            f"KL(θ1 ‖ θ2) = {self.value:.6g}{se} [{self.method}]",
            f"quadratic approximation ½ dθᵀ I(θ1) dθ ({self.scale} scale) = {self.quadratic:.6g}; "
            f"ratio {self.ratio:.6g}",
        )
        return Table("Kullback–Leibler divergence", ("parameter", "θ1", "θ2"), rows, notes)

    def __str__(self) -> str:
        return str(self.summary())


def _gaussian_kl(m1, v1, m2, v2):
    return 0.5 * (jnp.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1.0)


def _poisson_kl(m1, m2):
    return m1 * jnp.log(m1 / m2) - m1 + m2


def _exact_program(setup: Setup):
    weights = jnp.asarray(setup.weights())
    poisson = isinstance(setup.noise, Poisson)

    def run(theta1, theta2, times, dose_values):
        loc1, disp1, s1 = setup.location_dispersion(theta1, times, dose_values)
        loc2, disp2, s2 = setup.location_dispersion(theta2, times, dose_values)
        kl = _poisson_kl(loc1, loc2) if poisson else _gaussian_kl(loc1, disp1, loc2, disp2)
        return weights * kl, (loc1, disp1, s1), (loc2, disp2, s2)

    return run


def _mc_program(setup: Setup, n_samples: int):
    weights = jnp.asarray(setup.weights())
    outputs = setup.observation_outputs

    def run(f1, f2, theta1, theta2, key):
        p1 = dict(zip(setup.names, theta1, strict=True))
        p2 = dict(zip(setup.names, theta2, strict=True))

        def one(k):
            y = setup.noise.sample(k, f1, p1, outputs)
            diff = setup.noise.logpdf(y, f1, p1, outputs) - setup.noise.logpdf(y, f2, p2, outputs)
            return jnp.sum(weights * diff)

        draws = jax.lax.map(one, jax.random.split(key, n_samples), batch_size=256)
        return jnp.mean(draws), jnp.std(draws, ddof=1) / jnp.sqrt(n_samples)

    return run


def kl_divergence(
    model: Any,
    theta1: Any,
    theta2: Any,
    design: Any,
    *,
    noise: Any,
    method: str = "auto",
    scale: str = "lin",
    n_samples: int = 20000,
    key: Any = 0,
) -> KLDivergence:
    """The Kullback–Leibler divergence D(p_θ1 ‖ p_θ2) of the data of `design`.

    **Arguments:**
    - `model`, `design`, `noise`: as for `fisher_information`.
    - `theta1`, `theta2`: parameter values (dicts or vectors over
      ``parameter_names(model, noise)``, linear scale); the expectation is under θ1.
    - `method`: ``"exact"`` (closed form: the Gaussian family — `Gaussian`, `Proportional`,
      `Combined`, `LogNormal` — and `Poisson`), ``"monte-carlo"`` (an average over `n_samples`
      data sets simulated at θ1 with the fixed `key`, with its standard error), or ``"auto"``
      (exact where available).
    - `scale`: the coordinates of the quadratic approximation ½ dθᵀ I dθ: ``"lin"`` (dθ = θ2 − θ1)
      or ``"log"`` (dθ = log θ2 − log θ1). Both agree with the divergence to second order.

    **Returns:** a `KLDivergence` (`value`, `standard_error`, `quadratic`, `ratio`, ...).
    """
    scale = _check_scale(scale)
    if method not in METHODS:
        raise FimkitError(
            f"The 'method' argument of kl_divergence must be one of {list(METHODS)}. "
            f"Got {describe(method)}."
        )
    setup = Setup.build(model, design, noise)
    positive = scale == "log"
    th1 = setup.theta(theta1, positive=positive)
    from ..models.base import resolve_theta

    th2 = resolve_theta(setup.names, theta2, argument="theta2", positive=positive)
    exact_available = isinstance(setup.noise, (*GAUSSIAN_FAMILY, Poisson))
    if method == "auto":
        method = "exact" if exact_available else "monte-carlo"
    if method == "exact" and not exact_available:
        raise FimkitError(
            f"kl_divergence has no closed form for the noise model {setup.noise}; use "
            "method='monte-carlo' (or 'auto')."
        )
    per_obs, se = None, None
    if method == "exact":
        program = setup.compiled("geometry-kl-exact", _exact_program)
        kl, (loc1, disp1, s1), (loc2, disp2, s2) = program(
            jnp.asarray(th1), jnp.asarray(th2), setup.times(), setup.dose_values
        )
        for th, s, loc, disp in ((th1, s1, loc1, disp1), (th2, s2, loc2, disp2)):
            setup.check_status(s, th)
            setup.check_noise(loc, disp)
        per_obs = np.asarray(kl)
        value = float(np.sum(per_obs))
        family = "Poisson" if isinstance(setup.noise, Poisson) else "Gaussian"
        how = f"exact ({family} closed form per observation)"
    else:
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
            raise FimkitError(
                "The 'n_samples' argument of kl_divergence must be an integer >= 2. Got "
                f"{describe(n_samples)}."
            )
        if isinstance(key, int | np.integer):
            key = jax.random.PRNGKey(int(key))
        pred = setup.compiled("predict", _predict_program)
        f1, s1 = pred(th1, setup.times(), setup.dose_values)
        f2, s2 = pred(th2, setup.times(), setup.dose_values)
        setup.check_status(s1, th1)
        setup.check_status(s2, th2)
        program = setup.compiled(f"geometry-kl-mc-{n_samples}", lambda s: _mc_program(s, n_samples))
        mean, sd = program(f1, f2, jnp.asarray(th1), jnp.asarray(th2), key)
        value, se = float(mean), float(sd)
        how = f"Monte Carlo ({n_samples} data sets simulated at θ1)"
    if not np.isfinite(value):
        raise FimkitError(
            "The KL divergence is not finite: θ2 gives zero density to data that θ1 produces "
            f"(theta1={dict(zip(setup.names, th1.tolist(), strict=True))}, "
            f"theta2={dict(zip(setup.names, th2.tolist(), strict=True))})."
        )
    fim_method = "exact" if setup.noise.closed_form else "score-covariance"
    F = fisher_information(
        model, th1, design, noise=setup.noise, scale=scale, method=fim_method, key=key
    )
    d = np.log(th2) - np.log(th1) if scale == "log" else th2 - th1
    quadratic = float(0.5 * d @ F.matrix @ d)
    return KLDivergence(value, se, how, quadratic, setup.names, th1, th2, scale, per_obs)


__all__ = ["KLDivergence", "kl_divergence"]
