"""Approximate designs: weights on candidate times, the multiplicative algorithm, and the general
equivalence theorem as a certificate of optimality.

An approximate design ξ puts weight w_x on each candidate x (a sampling time of a group); its
information per observation is M(ξ) = Σ_x w_x M(x). For a concave criterion φ, ξ is optimal if and
only if no candidate offers a larger directional derivative than ξ itself (Kiefer and Wolfowitz,
1960; Whittle, 1973): for D-optimality, d(x, ξ) = tr(M(ξ)⁻¹ M(x)) ≤ p for every x, with equality at
the support points. The multiplicative algorithm (Titterington, 1976; Silvey, Titterington and
Torsney, 1978) moves weight towards the candidates where d is large.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..design import Design, Group
from ..errors import DesignError, FimkitError, describe
from ..information.fim import FisherInformation
from ..models import is_petab_problem
from ..report.tables import Summary, Table, fmt
from ._engine import Problem, criterion_fn, make_problem
from .optimize import _as_space, _template, candidate_elements, criterion_thetas
from .robust import RobustCriterion
from .space import DesignSpace


@dataclass(frozen=True)
class EquivalenceCertificate:
    """The general equivalence theorem checked on the candidate points.

    For a concave criterion φ of the information, an approximate design ξ is optimal if and only if
    the directional derivative towards every candidate x is at most that towards ξ itself:
    d(x, ξ) = tr(∇φ(F) M(x)) ≤ tr(∇φ(F) M(ξ)) =: `bound`. For D-optimality without a prior,
    d(x, ξ) = tr(M(ξ)⁻¹ M(x)) and the bound is p, the number of parameters (Kiefer–Wolfowitz).

    **Fields:** `times` and `groups` of the candidates; `sensitivity` d(x, ξ) at each; `bound`;
    `max_sensitivity` and where it is reached (`argmax_time`); `holds` (max ≤ bound·(1 + rtol));
    `efficiency_bound`: for D-optimality without a prior, the lower bound p / max d on the
    D-efficiency of ξ (else None).
    """

    times: np.ndarray
    groups: np.ndarray
    sensitivity: np.ndarray
    bound: float
    max_sensitivity: float
    argmax_time: float
    holds: bool
    rtol: float
    efficiency_bound: float | None
    criterion: str

    def plot(self, ax: Any = None):
        """The sensitivity function over the candidates, with the bound as a horizontal line."""
        from matplotlib.figure import Figure

        if ax is None:
            fig = Figure(figsize=(6, 3.5), layout="constrained")
            ax = fig.add_subplot()
        else:
            fig = ax.figure
        for g in np.unique(self.groups):
            m = self.groups == g
            ax.plot(self.times[m], self.sensitivity[m], marker=".", label=f"group {g}")
        ax.axhline(self.bound, color="C3", linestyle="--", label=f"bound {self.bound:.4g}")
        ax.set_xlabel("time")
        ax.set_ylabel("sensitivity d(t, ξ)")
        ax.set_title(
            f"Equivalence theorem ({self.criterion}): {'holds' if self.holds else 'fails'}"
        )
        ax.legend(fontsize=8)
        return fig


@dataclass(frozen=True, eq=False)
class ApproximateDesign:
    """Weights on candidate sampling times (an approximate design), from `optimal_weights`.

    **Fields:** `times`, `groups` (the candidates), `weights` (summing to 1), `value` (the criterion
    of the information per observation, prior scaled as given), `criterion`, `certificate` (an
    `EquivalenceCertificate`), `iterations`, `converged`.
    """

    times: np.ndarray
    groups: np.ndarray
    weights: np.ndarray
    value: float
    criterion: Any
    certificate: EquivalenceCertificate
    iterations: int
    converged: bool
    _space: Any = field(default=None, repr=False)

    def support(self, threshold: float = 1e-4) -> list[tuple[int, float, float]]:
        """(group, time, weight) of the candidates with weight above `threshold`."""
        keep = self.weights > threshold
        return [
            (int(g), float(t), float(w))
            for g, t, w in zip(self.groups[keep], self.times[keep], self.weights[keep], strict=True)
        ]

    def to_design(self, n: int, threshold: float = 1e-3) -> Design:
        """An exact design of `n` observations by efficient rounding (Pukelsheim and Rieder, 1992).

        Each support point (weight above `threshold`: the multiplicative algorithm leaves small
        weights near the support that a converged design would not have) gets about n·w of the
        observations, as replicated times; with several groups each group samples its own points.
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise DesignError(
                f"The 'n' argument of to_design must be an integer >= 1. Got {describe(n)}."
            )
        if not isinstance(self._space, DesignSpace):
            raise DesignError(
                "This approximate design weights candidate measurement rows of a PEtab problem; "
                "it has no Design to round to. Use optimize_design(problem, x, space) for the "
                "exact design of n new measurements."
            )
        sup = self.support(threshold)
        w = np.array([s[2] for s in sup])
        w = w / w.sum()
        l = len(sup)
        counts = np.ceil((n - l / 2) * w).astype(int)
        while counts.sum() < n:
            j = int(np.argmin(counts / w))
            counts[j] += 1
        while counts.sum() > n:
            j = int(np.argmax((counts - 1) / w))
            counts[j] -= 1
        groups = []
        space = self._space
        for g in sorted({s[0] for s in sup}):
            t = np.concatenate(
                [np.full(c, s[1]) for s, c in zip(sup, counts, strict=True) if s[0] == g and c > 0]
            )
            if t.size == 0:
                continue
            gs = space.groups[g]
            groups.append(Group(np.sort(t), gs.outputs, gs.doses, 1))
        return Design(groups=groups)

    def summary(self) -> Summary:
        rows = tuple((str(g), f"{t:.6g}", f"{w:.4f}") for g, t, w in self.support())
        c = self.certificate
        notes = (
            f"{self.criterion.label} value {fmt(self.value, 8)}; {self.iterations} iterations "
            f"({'converged' if self.converged else 'not converged'})",
            f"equivalence theorem: max d = {c.max_sensitivity:.6g} at t = {c.argmax_time:.4g}, bound "
            f"{c.bound:.6g}: {'holds' if c.holds else 'FAILS'}"
            + (
                f"; D-efficiency >= {c.efficiency_bound:.4f}"
                if c.efficiency_bound is not None
                else ""
            ),
        )
        return Summary(
            (Table("Approximate design (support)", ("group", "time", "weight"), rows, notes),)
        )

    def __str__(self) -> str:
        return str(self.summary())


def _candidate_information(problem: Problem, space: DesignSpace):
    """Per-candidate informations (S, C, p, p) at each θ row of the criterion, the candidate times
    and their groups."""
    for gi, gs in enumerate(space.groups):
        if gs.candidates is None:
            raise DesignError(
                f"Approximate designs put weights on candidate times: group {gi} of the design space "
                "needs 'candidates'."
            )
        if gs.fixed_times:
            raise DesignError(
                f"Group {gi} has fixed_times; an approximate design has none. Add their information "
                "as a prior instead (prior=fisher_information(...))."
            )
        if gs.output_options is not None or any(lv is not None for lv in gs.dose_levels):
            raise DesignError(
                f"Group {gi} has output options or dose levels; an approximate design needs them "
                "fixed."
            )
    groups = [Group(np.asarray(gs.candidates), gs.outputs, gs.doses, 1) for gs in space.groups]
    E = np.concatenate(candidate_elements(problem, groups), axis=1)
    times = np.concatenate([np.asarray(gs.candidates) for gs in space.groups])
    gidx = np.concatenate([np.full(len(gs.candidates), g) for g, gs in enumerate(space.groups)])
    return E, times, gidx


def _weights_functions(problem: Problem, E: np.ndarray, n_obs: float):
    """w → utility, and w → value, of F(w) = prior + n_obs·Σ_x w_x M(x) (at each θ row)."""
    fn = criterion_fn(problem.crit, problem.ctx)
    prior = jnp.asarray(problem.prior)
    Ej = jnp.asarray(E)
    th = jnp.asarray(criterion_thetas(problem))

    def utility(w):
        return fn(prior + n_obs * jnp.einsum("c,scij->sij", w, Ej), th)[0]

    def value(w):
        return fn(prior + n_obs * jnp.einsum("c,scij->sij", w, Ej), th)[1]

    return utility, value


def _check_weights_criterion(crit: Any) -> None:
    base = crit.base if isinstance(crit, RobustCriterion) else crit
    if base.name in ("ME", "trace"):
        raise FimkitError(
            f"The multiplicative algorithm needs a concave criterion that grows with the information "
            f"(D, A, E, Ds, c and their expectations); {base.label!r} is not one."
        )


def _certificate(problem, E, times, gidx, w, n_obs, rtol) -> EquivalenceCertificate:
    utility, _ = _weights_functions(problem, E, n_obs)
    d = np.asarray(jax.grad(utility)(jnp.asarray(w)))
    bound = float(w @ d)
    k = int(np.argmax(d))
    crit = problem.crit
    is_d = not problem.robust and crit.name == "D" and not np.any(problem.prior)
    if is_d:
        # Exactly tr(M⁻¹ M(x)) with bound p, up to rounding.
        eff = float(problem.ctx.size / d[k]) if d[k] > 0 else None
        bound = float(problem.ctx.size)
    else:
        eff = None
    return EquivalenceCertificate(
        times,
        gidx,
        d,
        bound,
        float(d[k]),
        float(times[k]),
        bool(d[k] <= bound * (1 + rtol)),
        float(rtol),
        None if eff is None else min(eff, 1.0),
        crit.label,
    )


def optimal_weights(
    model: Any,
    theta: Any,
    space: Any,
    criterion: Any = "D",
    *,
    noise: Any = None,
    scale: str | None = None,
    params: Sequence[str] | None = None,
    prior: FisherInformation | None = None,
    n_obs: float | None = None,
    tol: float = 1e-6,
    max_iter: int = 20000,
    rtol: float = 1e-3,
) -> ApproximateDesign:
    """The optimal approximate design on the candidate times of `space`: the multiplicative algorithm.

    For a `PetabProblem` and a `PetabDesignSpace`, the weights are on the candidate measurement
    rows, with the existing measurements as the prior and `n_obs` defaulting to the space's `n`
    (see `fimkit.oed.petab_design`; `noise` does not apply).

    The information per observation of weights w is M(w) = Σ_x w_x M(x) over the candidates x of every
    group; with a `prior`, F(w) = F₀ + n_obs·M(w) (`n_obs`, the number of new observations, is then
    required). Each iteration sets w_x ← w_x·(d_x / Σ_y w_y d_y)^δ with d_x = ∂φ/∂w_x (δ = 1 for D,
    ½ otherwise), which increases φ for D (Titterington; Silvey, Titterington and Torsney, 1978),
    until max_x d_x ≤ (1 + tol)·Σ_y w_y d_y. The result carries an `EquivalenceCertificate`.
    """
    if is_petab_problem(model):
        from .petab_design import petab_optimal_weights

        if noise is not None:
            raise FimkitError(
                "optimal_weights for a PEtab problem takes its noise model from the PEtab tables; "
                f"'noise' must not be given. Got noise={noise!r}."
            )
        return petab_optimal_weights(
            model, theta, space, criterion, scale=scale, params=params, prior=prior,
            n_obs=n_obs, tol=tol, max_iter=max_iter, rtol=rtol,
        )  # fmt: skip
    if noise is None:
        raise FimkitError(
            "optimal_weights(model, theta, space, noise=...) needs the noise model: 'noise' is "
            f"missing. Got model {describe(model)}."
        )
    scale = "lin" if scale is None else scale
    space = _as_space(space)
    problem = make_problem(model, theta, criterion, noise, scale, params, prior, _template(space))
    _check_weights_criterion(problem.crit)
    if prior is not None and n_obs is None:
        raise FimkitError(
            "With a 'prior', optimal_weights needs 'n_obs', the number of new observations the "
            "weights will be spread over."
        )
    n_obs = 1.0 if n_obs is None else float(n_obs)
    E, times, gidx = _candidate_information(problem, space)
    w, iters, conv = _multiplicative(problem, E, n_obs, tol, max_iter)
    cert = _certificate(problem, E, times, gidx, w, n_obs, rtol)
    _, value = _weights_functions(problem, E, n_obs)
    return ApproximateDesign(
        times, gidx, w, float(value(jnp.asarray(w))), problem.crit, cert, iters, conv, space
    )


def _multiplicative(problem: Problem, E: np.ndarray, n_obs: float, tol: float, max_iter: int):
    utility, _ = _weights_functions(problem, E, n_obs)
    crit = problem.crit
    base = crit.base if isinstance(crit, RobustCriterion) else crit
    delta = 1.0 if base.name in ("D", "Ds") else 0.5
    grad = jax.grad(utility)
    C = E.shape[-3]

    def cond(state):
        _, it, gap = state
        return (it < max_iter) & (gap > tol)

    def body(state):
        w, it, _ = state
        d = grad(w)
        s = w @ d
        w = w * jnp.clip(d / s, 1e-300, None) ** delta
        w = w / jnp.sum(w)
        d2 = grad(w)
        return w, it + 1, jnp.max(d2) / (w @ d2) - 1.0

    @jax.jit
    def run(w0):
        d0 = grad(w0)
        return jax.lax.while_loop(cond, body, (w0, 0, jnp.max(d0) / (w0 @ d0) - 1.0))

    w0 = jnp.full(C, 1.0 / C)
    if not np.isfinite(float(utility(w0))):
        raise FimkitError(
            "The information of the uniform design over all candidates is singular: no weighting of "
            "these candidates can determine every parameter. Add candidates or outputs, or fix "
            "parameters (params=...)."
        )
    w, it, gap = run(w0)
    return np.asarray(w), int(it), bool(gap <= tol)


def equivalence_check(
    model: Any,
    theta: Any,
    space: Any,
    weights: Any,
    criterion: Any = "D",
    *,
    noise: Any,
    scale: str = "lin",
    params: Sequence[str] | None = None,
    prior: FisherInformation | None = None,
    n_obs: float | None = None,
    rtol: float = 1e-3,
) -> EquivalenceCertificate:
    """The general equivalence theorem for an approximate design: weights on the candidates of `space`.

    `weights` has one entry per candidate (over the groups, in order); they are normalised to sum to
    1. See `EquivalenceCertificate`. Use it to check a design from elsewhere, or to see how far from
    optimal a design is (for D, its efficiency is at least p / max d).
    """
    space = _as_space(space)
    problem = make_problem(model, theta, criterion, noise, scale, params, prior, _template(space))
    _check_weights_criterion(problem.crit)
    if prior is not None and n_obs is None:
        raise FimkitError("With a 'prior', equivalence_check needs 'n_obs'.")
    n_obs = 1.0 if n_obs is None else float(n_obs)
    E, times, gidx = _candidate_information(problem, space)
    try:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DesignError(f"The 'weights' must be numbers. Got {describe(weights)}.") from exc
    if w.size != times.size or np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise DesignError(
            f"The 'weights' must be {times.size} non-negative numbers (one per candidate), not all "
            f"zero. Got {w.size} value(s)."
        )
    w = w / w.sum()
    utility, _ = _weights_functions(problem, E, n_obs)
    if not np.isfinite(float(utility(jnp.asarray(w)))):
        raise FimkitError(
            "The information of these weights is singular; the equivalence theorem needs a design "
            "with an invertible information."
        )
    return _certificate(problem, E, times, gidx, w, n_obs, rtol)


__all__ = ["ApproximateDesign", "EquivalenceCertificate", "equivalence_check", "optimal_weights"]
