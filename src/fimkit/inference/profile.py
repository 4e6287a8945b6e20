"""Profile likelihood: each parameter's likelihood with every other parameter re-optimised.

For parameter j the profile is ℓ_p(θ_j) = max over θ_{-j} of ℓ(θ). The set where it stays within
½χ²₁(1−α) of the maximum is an α-level confidence interval that, unlike the Wald interval, follows
the likelihood's real shape: it is asymmetric where the likelihood is, and open-ended where the data
cannot bound the parameter (practical non-identifiability, Raue et al. 2009, Bioinformatics 25:1923).

The profile is traced from the maximum outwards on the fit's scale (log θ by default). Each step
re-optimises the other parameters by a trust-region Newton method with the exact gradient and
Hessian (`Likelihood.evaluate`), warm-started from the previous point moved along the profile's
tangent. Step lengths come from the local slope and curvature of the profile (the Schur complement
of the Hessian), chosen so that each step advances the signed root z = √(2(ℓ̂ − ℓ_p)) by about
z_{1−α/2}/`resolution`; once a step crosses the threshold, a few secant steps on z locate the
crossing, and the endpoint is interpolated linearly in z, which is exact for a quadratic profile.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from ..errors import FimkitError, FitError, ParameterError, SingularFIMError, describe
from ..likelihood import Likelihood
from ..report.tables import Table, fmt
from .fit import ConvergenceWarning, FitResult, _bounds

#: Why tracing stopped on one side: the threshold was crossed (the interval is closed there), the
#: profiled parameter reached its bound, the profile stayed flat for `_FLAT_STEPS` steps in a row,
#: `max_steps` ran out, or no step could be re-optimised.
STOP_REASONS = ("threshold", "bound", "flat", "max_steps", "failed")

_GROWTH = 2.0  # a step is at most this multiple of the previous one
_HALVINGS = 8  # a step whose re-optimisation fails is halved at most this often
_Z_TOL = 1e-4  # the secant refinement stops when z is this close to the critical value
# A side whose profile changes by less than _FLAT_TOL·½χ²₁ in each of _FLAT_STEPS steps in a row,
# each of the full `max_step`, is reported open ("flat") without tracing further.
_FLAT_STEPS = 5
_FLAT_TOL = 1e-3


# -- results -------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Profile:
    """The profile likelihood of one parameter.

    **Fields:**
    - `name`, `scale` (the fit's: the profile was traced in log θ_j for ``"log"``), `estimate`
      (θ̂_j), `loglike_max` (ℓ̂, the fit's log-likelihood), `alpha`, `drop` (½χ²₁(1−α): the
      interval is where ℓ_p ≥ ℓ̂ − drop).
    - `grid`: the values of θ_j (linear scale, ascending, the estimate included).
    - `loglike`: ℓ_p at each grid value.
    - `theta`: (n_points, n_params) all parameters (linear scale, in `names` order) at each grid
      value: the re-optimised others and θ_j itself.
    - `names`: the fit's parameter names (the columns of `theta` and `at_bound`).
    - `at_bound`: (n_points, n_params) −1 where another parameter sits at its lower bound, +1 at its
      upper bound, 0 otherwise (the profiled parameter's own column is always 0).
    - `converged`: (n_points,) whether the re-optimisation at each point met its tolerance.
    - `lower`, `upper`: the profile interval on the linear scale, interpolated at the threshold.
      An open side is −inf (0 on the log scale, where θ > 0) or +inf.
    - `open_lower`, `open_upper`: whether that side is open (the threshold was not crossed).
    - `stop_lower`, `stop_upper`: why tracing stopped on each side, one of `STOP_REASONS`.
    - `wald_lower`, `wald_upper`, `wald_se`: the Wald interval of the fit for comparison (`wald_se`
      on the fit's scale); NaN where the information is singular.
    """

    name: str
    names: tuple[str, ...]
    scale: str
    alpha: float
    drop: float
    estimate: float
    loglike_max: float
    grid: np.ndarray
    loglike: np.ndarray
    theta: np.ndarray
    at_bound: np.ndarray
    converged: np.ndarray
    lower: float
    upper: float
    open_lower: bool
    open_upper: bool
    stop_lower: str
    stop_upper: str
    wald_lower: float
    wald_upper: float
    wald_se: float

    @property
    def interval(self) -> tuple[float, float]:
        """(lower, upper) of the profile interval."""
        return self.lower, self.upper

    @property
    def wald(self) -> tuple[float, float]:
        """(lower, upper) of the Wald interval."""
        return self.wald_lower, self.wald_upper

    @property
    def threshold(self) -> float:
        """The log-likelihood level that bounds the interval, ℓ̂ − ½χ²₁(1−α)."""
        return self.loglike_max - self.drop

    @property
    def signed_root(self) -> np.ndarray:
        """sign(θ_j − θ̂_j)·√(2(ℓ̂ − ℓ_p)): standard normal under the usual asymptotics."""
        u, u_hat = _to_u(self.grid, self.scale), _to_u(self.estimate, self.scale)
        return np.sign(u - u_hat) * np.sqrt(2.0 * np.clip(self.loglike_max - self.loglike, 0, None))

    def bound_hits(self) -> list[tuple[float, str, str]]:
        """Where another parameter sits at a bound: (θ_j, name, "lower" | "upper") per hit."""
        hits = []
        for i, k in zip(*np.nonzero(self.at_bound), strict=True):
            side = "lower" if self.at_bound[i, k] < 0 else "upper"
            hits.append((float(self.grid[i]), self.names[k], side))
        return hits


@dataclass(frozen=True, eq=False)
class ProfileLikelihood:
    """Profile likelihoods of several parameters of one fit; ``result["k"]`` is one `Profile`.

    **Fields:** `profiles` (a tuple of `Profile`), `names` (the profiled parameters), `alpha`,
    `scale`, `loglike_max`, `drop` (½χ²₁(1−α)). **Methods:** `summary()`, `plot(names=None)`,
    `to_dict()`.
    """

    profiles: tuple[Profile, ...]
    names: tuple[str, ...]
    alpha: float
    scale: str
    loglike_max: float
    drop: float

    def __getitem__(self, name: str) -> Profile:
        if name not in self.names:
            raise ParameterError(
                f"No profile of {name!r}; the profiled parameters are {list(self.names)}."
            )
        return self.profiles[self.names.index(name)]

    def __iter__(self):
        return iter(self.profiles)

    def __len__(self) -> int:
        return len(self.profiles)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {
            p.name: {
                "estimate": p.estimate,
                "lower": p.lower,
                "upper": p.upper,
                "open_lower": p.open_lower,
                "open_upper": p.open_upper,
                "stop_lower": p.stop_lower,
                "stop_upper": p.stop_upper,
                "wald_lower": p.wald_lower,
                "wald_upper": p.wald_upper,
                "grid": p.grid.tolist(),
                "loglike": p.loglike.tolist(),
            }
            for p in self.profiles
        }

    def summary(self) -> Table:
        """Profile and Wald intervals side by side, with open sides and bound hits noted."""
        level = f"{100 * (1 - self.alpha):g}%"
        rows = []
        for p in self.profiles:
            notes = []
            for side, is_open, why in (
                ("below", p.open_lower, p.stop_lower),
                ("above", p.open_upper, p.stop_upper),
            ):
                if is_open:
                    notes.append(f"open {side} ({why.replace('_', ' ')})")
            hits: dict[tuple[str, str], int] = {}
            for _, other, side in p.bound_hits():
                hits[other, side] = hits.get((other, side), 0) + 1
            notes += [f"{o} at {s} bound ({c} pt)" for (o, s), c in hits.items()]
            if not p.converged.all():
                notes.append(f"{int(np.sum(~p.converged))} pt not converged")
            rows.append(
                (
                    p.name,
                    fmt(p.estimate),
                    "open" if p.open_lower else fmt(p.lower),
                    "open" if p.open_upper else fmt(p.upper),
                    fmt(p.wald_lower),
                    fmt(p.wald_upper),
                    str(p.grid.size),
                    "; ".join(notes) or "-",
                )
            )
        return Table(
            f"Profile likelihood ({level} intervals)",
            (
                "parameter",
                "estimate",
                "profile lower",
                "profile upper",
                "Wald lower",
                "Wald upper",
                "points",
                "notes",
            ),
            tuple(rows),
            (
                f"profile interval: where ℓ_p ≥ ℓ̂ − {self.drop:.4g} (½χ²₁ at {level}); "
                f"ℓ̂ = {self.loglike_max:.6g}; traced on the {self.scale} scale",
            ),
        )

    def plot(self, names: Sequence[str] | str | None = None):
        """ℓ_p − ℓ̂ per parameter, with the threshold, the Wald quadratic and bound hits.

        **Arguments:**
        - `names`: the parameters to draw (default all profiled ones).

        **Returns:** a matplotlib `Figure` (no pyplot state is touched), one panel per parameter.
        On the log scale the horizontal axis is logarithmic and the Wald quadratic is in log θ.
        """
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter

        names = _check_names(names, self.names, "plot")
        ncols = min(3, len(names))
        nrows = -(-len(names) // ncols)
        fig = Figure(figsize=(3.6 * ncols, 3.0 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes[len(names) :]:
            ax.set_visible(False)
        for ax, name in zip(axes, names, strict=False):
            p = self[name]
            u = _to_u(p.grid, p.scale)
            u_hat = _to_u(p.estimate, p.scale)
            span = max(float(u.max() - u.min()), 1e-12)
            uu = np.linspace(u.min() - 0.05 * span, u.max() + 0.05 * span, 200)
            ax.plot(p.grid, p.loglike - p.loglike_max, "o-", color="C0", ms=3, label="profile")
            if np.isfinite(p.wald_se) and p.wald_se > 0:
                ax.plot(
                    _from_u(uu, p.scale),
                    -0.5 * ((uu - u_hat) / p.wald_se) ** 2,
                    "--",
                    color="C1",
                    label="Wald (quadratic)",
                )
            ax.axhline(-p.drop, color="C3", ls=":", lw=1, label=f"threshold ({1 - p.alpha:g})")
            ax.axvline(p.estimate, color="0.6", lw=0.8)
            hit = np.any(p.at_bound != 0, axis=1)
            if hit.any():
                ax.plot(
                    p.grid[hit],
                    (p.loglike - p.loglike_max)[hit],
                    "x",
                    color="C3",
                    ms=7,
                    label="another parameter at a bound",
                )
            for value, is_open in ((p.lower, p.open_lower), (p.upper, p.open_upper)):
                if not is_open:
                    ax.plot([value], [-p.drop], "|", color="C3", ms=12)
            if p.scale == "log":
                ax.set_xscale("log")
                if p.grid.max() < 10 * p.grid.min():
                    # Within one decade the log axis would label only minor ticks, crowded in
                    # the "a×10^b" form: label a few plain values instead.
                    ticks = MaxNLocator(4).tick_values(p.grid.min(), p.grid.max())
                    ax.set_xticks([x for x in ticks if p.grid.min() <= x <= p.grid.max()])
                    ax.xaxis.set_major_formatter(ScalarFormatter())
                    ax.xaxis.set_minor_formatter(NullFormatter())
            lowest = float(np.min(p.loglike - p.loglike_max))
            ax.set_ylim(min(lowest, -p.drop) * 1.3 - 0.1, 0.3 * p.drop)
            ax.set_xlabel(name)
            ax.set_ylabel(r"$\ell_p - \hat\ell$")
            ax.set_title(f"profile of {name}")
        axes[0].legend(fontsize=7, loc="best")
        return fig


# -- helpers ------------------------------------------------------------------------------------
def _to_u(x: Any, scale: str) -> Any:
    with np.errstate(divide="ignore"):
        return np.log(x) if scale == "log" else np.asarray(x, dtype=float)


def _from_u(u: Any, scale: str) -> Any:
    return np.exp(u) if scale == "log" else np.asarray(u, dtype=float)


def _check_names(names: Any, known: Sequence[str], where: str) -> tuple[str, ...]:
    if names is None:
        return tuple(known)
    if isinstance(names, str):
        names = [names]
    try:
        names = list(names)
    except TypeError as exc:
        raise ParameterError(
            f"The 'names' argument of {where} must be a parameter name or a list of them. "
            f"Got {describe(names)}."
        ) from exc
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ParameterError(
            f"The 'names' argument of {where} names unknown parameters {unknown}; the parameters "
            f"are {list(known)}. Got {describe(names)}."
        )
    return tuple(dict.fromkeys(names))


def _check_positive_int(value: Any, arg: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise FimkitError(
            f"The '{arg}' argument of profile_likelihood must be an integer >= {minimum}. "
            f"Got {describe(value)}."
        )
    return int(value)


def _near(u: np.ndarray, bound: np.ndarray, rtol: float) -> np.ndarray:
    """Where u is within rtol·max(1, |bound|) of a finite bound."""
    finite = np.isfinite(bound)
    gap = np.abs(u - np.where(finite, bound, 0.0))
    return finite & (gap <= rtol * np.maximum(1.0, np.abs(np.where(finite, bound, 0.0))))


@dataclass(frozen=True)
class _Point:
    u: np.ndarray  # all parameters on the fit's scale
    value: float
    g: np.ndarray  # gradient of ℓ in u
    H: np.ndarray  # Hessian of ℓ in u
    at_bound: np.ndarray  # −1 / 0 / +1 per parameter
    converged: bool


class _Problem:
    """The log-likelihood on the fit's scale, and its maximisation with one parameter held."""

    def __init__(self, lik: Likelihood, scale: str, lo: np.ndarray, hi: np.ndarray):
        self.lik, self.scale, self.lo, self.hi = lik, scale, lo, hi
        self.n = len(lik.names)
        self._memo: dict[bytes, Any] = {}

    def terms(self, u: np.ndarray):
        """(ℓ, ∇ℓ, ∇²ℓ) in u, or None where the model cannot be evaluated."""
        key = u.tobytes()
        if key in self._memo:
            return self._memo[key]
        self._memo.clear()
        th = _from_u(u, self.scale)
        out = None
        if np.all(np.isfinite(th)):
            try:
                with np.errstate(all="ignore"):
                    value, G, H = self.lik.evaluate(th)
                g = G.sum(axis=0)
                if self.scale == "log":
                    # Chain rule for u = log θ (as in fit and observed_information).
                    H = H * np.outer(th, th) + np.diag(th * g)
                    g = g * th
                if np.isfinite(value) and np.all(np.isfinite(g)) and np.all(np.isfinite(H)):
                    out = (float(value), g, H)
            except (FimkitError, FloatingPointError, np.linalg.LinAlgError):
                out = None
        self._memo[key] = out
        return out

    def bound_flags(self, u: np.ndarray, j: int) -> np.ndarray:
        flags = np.zeros(self.n, dtype=np.int8)
        flags[_near(u, self.lo, 1e-7)] = -1
        flags[_near(u, self.hi, 1e-7)] = 1
        flags[j] = 0
        return flags

    def maximise(self, j: int, uj: float, start: np.ndarray) -> _Point | None:
        """max over u_{-j} of ℓ with u_j = uj, from `start` (clipped into the bounds)."""
        from scipy import optimize

        free = np.arange(self.n) != j
        base = np.clip(np.asarray(start, dtype=float), self.lo, self.hi)
        base[j] = uj

        def full(x):
            u = base.copy()
            u[free] = x
            return u

        def fun(x):
            t = self.terms(full(x))
            return np.inf if t is None else -t[0]

        def jac(x):
            t = self.terms(full(x))
            return np.full(x.size, np.nan) if t is None else -t[1][free]

        def hess(x):
            t = self.terms(full(x))
            return np.full((x.size, x.size), np.nan) if t is None else -t[2][np.ix_(free, free)]

        if self.terms(base) is None:
            return None
        if not free.any():
            value, g, H = self.terms(base)
            return _Point(base, value, g, H, np.zeros(self.n, np.int8), True)
        x0 = base[free]
        bounded = bool(np.isfinite(self.lo[free]).any() or np.isfinite(self.hi[free]).any())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if bounded:
                # Interior-point iterates stay strictly inside: start a hair inside the bounds.
                lo, hi = self.lo[free], self.hi[free]
                pad = 1e-9 * np.maximum(1.0, np.abs(x0))
                x0 = np.clip(x0, lo + pad, hi - pad)
                res = optimize.minimize(
                    fun,
                    x0,
                    jac=jac,
                    hess=hess,
                    method="trust-constr",
                    bounds=optimize.Bounds(lo, hi),
                    options={"maxiter": 500, "gtol": 1e-10, "xtol": 1e-12},
                )
            else:
                res = optimize.minimize(
                    fun,
                    x0,
                    jac=jac,
                    hess=hess,
                    method="trust-exact",
                    options={"maxiter": 200, "gtol": 1e-8},
                )
        u = full(np.asarray(res.x, dtype=float))
        if bounded:
            u = self._polish(u, j)
        t = self.terms(u)
        if t is None:
            return None
        value, g, H = t
        flags = self.bound_flags(u, j)
        # Converged: the gradient vanishes in every free direction not held by a bound.
        inner = free & (flags == 0)
        gnorm = float(np.max(np.abs(g[inner]))) if inner.any() else 0.0
        converged = gnorm < 1e-6 * (1.0 + abs(value))
        return _Point(u, value, g, H, flags, converged)

    def _polish(self, u: np.ndarray, j: int) -> np.ndarray:
        """Finish an interior-point solution by an active-set Newton method.

        An interior-point method stops a little inside a bound and short of full accuracy. Here
        parameters near a bound go onto it when the gradient pushes them outward (the
        Karush–Kuhn–Tucker sign), and Newton steps with backtracking, kept within the bounds,
        polish the others. The polished point is kept only if ℓ did not decrease.
        """
        t0 = self.terms(u)
        if t0 is None:
            return u
        other = np.arange(self.n) != j
        near_lo = _near(u, self.lo, 1e-4) & other
        near_hi = _near(u, self.hi, 1e-4) & other
        v = np.where(near_lo, self.lo, np.where(near_hi, self.hi, u))
        t = self.terms(v)
        if t is None:
            return u
        g = t[1]
        # A parameter stays on its bound only if ℓ would rise beyond it.
        active = (near_lo & (g <= 0)) | (near_hi & (g >= 0))
        v = np.where(active | ~other, v, u)
        keep = other & ~active
        for _ in range(30):
            t = self.terms(v)
            if t is None or not keep.any():
                break
            value, g, H = t
            if np.max(np.abs(g[keep])) < 1e-11 * (1.0 + abs(value)):
                break
            Hk = H[np.ix_(keep, keep)]
            if np.linalg.eigvalsh(Hk)[-1] >= 0:
                break
            step = -np.linalg.solve(Hk, g[keep])
            lam, accepted = 1.0, False
            while lam > 1e-6:
                w = v.copy()
                w[keep] += lam * step
                if np.all(w >= self.lo) and np.all(w <= self.hi):
                    tw = self.terms(w)
                    if tw is not None and tw[0] >= value - 1e-13 * (1.0 + abs(value)):
                        accepted = True
                        break
                lam *= 0.5
            if not accepted:
                break
            v = w
        tv = self.terms(v)
        if tv is None or tv[0] < t0[0] - 1e-13 * (1.0 + abs(t0[0])):
            return u
        return v


def _local(point: _Point, j: int) -> tuple[float, float, np.ndarray]:
    """The profile's slope and curvature in u_j at a point, and the tangent of the others.

    Along the profile the other parameters follow u_{-j}(u_j) with ∂ℓ/∂u_{-j} = 0, so
    dℓ_p/du_j = g_j and d²ℓ_p/du_j² = H_jj − H_jr H_rr⁻¹ H_rj, with tangent du_r/du_j = −H_rr⁻¹ H_rj
    (r: the other parameters not held at a bound).
    """
    n = point.u.size
    r = (np.arange(n) != j) & (point.at_bound == 0)
    tangent = np.zeros(n)
    slope = float(point.g[j])
    curv = float(point.H[j, j])
    if r.any():
        Hrr = point.H[np.ix_(r, r)]
        Hrj = point.H[r, j]
        w = np.linalg.eigvalsh(Hrr)
        if w[-1] < -1e-12 * max(1.0, abs(w[0])):
            x = np.linalg.solve(Hrr, Hrj)
            tangent[r] = -x
            curv = float(point.H[j, j] - Hrj @ x)
        else:
            curv = np.nan
    return slope, curv, tangent


def _step_length(slope: float, curv: float, target: float) -> float:
    """The step d > 0 along which the local quadratic model drops by `target`.

    `slope` is dℓ_p/dd in the direction of travel, `curv` the second derivative.
    """
    b = -slope  # rate of decrease
    a = -0.5 * curv if np.isfinite(curv) else 0.0
    if a > 1e-14 * max(1.0, abs(b)):
        disc = b * b + 4.0 * a * target
        return (-b + np.sqrt(disc)) / (2.0 * a)
    if b > 0:
        return target / b
    return np.inf


# -- the tracer -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Tracer:
    """Traces the profile of parameter j on one side of the maximum at a time."""

    prob: _Problem
    j: int
    lhat: float  # the fit's log-likelihood
    zc: float  # z_{1−α/2}: the signed root at the threshold
    dz: float  # the target advance of the signed root per step
    max_steps: int
    max_step: float
    first_step: float
    refine: int

    def z(self, p: _Point) -> float:
        return float(np.sqrt(2.0 * max(self.lhat - p.value, 0.0)))

    def side(self, top: _Point, direction: int) -> tuple[list[_Point], str, float | None]:
        """The points of one side, why tracing stopped, and the crossing in u_j (or None)."""
        j, prob = self.j, self.prob
        drop = 0.5 * self.zc**2
        points: list[_Point] = []
        current, z_cur, d_prev, flat = top, 0.0, None, 0
        limit = prob.hi[j] if direction > 0 else prob.lo[j]
        for _ in range(self.max_steps):
            room = abs(limit - current.u[j])
            if np.isfinite(limit) and room <= 1e-12 * max(1.0, abs(limit)):
                return points, "bound", None
            slope, curv, tangent = _local(current, j)
            target = 0.5 * ((z_cur + self.dz) ** 2 - z_cur**2)
            d = _step_length(direction * slope, curv, target)
            if d_prev is None:
                d = d if np.isfinite(d) else self.first_step
            else:
                d = min(d, _GROWTH * d_prev)
            d = min(d, self.max_step)
            new = None
            for _ in range(_HALVINGS):
                at_limit = d >= room
                step = room if at_limit else d
                uj = limit if at_limit else current.u[j] + direction * step
                new = self.maximise_from(current, uj, direction * step * tangent)
                if new is not None:
                    break
                d = 0.5 * step
            if new is None:
                return points, "failed", None
            points.append(new)
            z_new = self.z(new)
            if z_new >= self.zc - _Z_TOL:
                return points, "threshold", self.crossing(current, new, z_cur, z_new, points)
            if at_limit:
                return points, "bound", None
            small = abs(new.value - current.value) < _FLAT_TOL * drop
            flat = flat + 1 if small and step >= self.max_step else 0
            if flat >= _FLAT_STEPS:
                return points, "flat", None
            current, z_cur, d_prev = new, z_new, step
        return points, "max_steps", None

    def maximise_from(self, current: _Point, uj: float, shift: np.ndarray) -> _Point | None:
        """Re-optimise at u_j = uj from the better of two starts: the previous point moved along
        the profile's tangent (a predictor step), and the previous point itself."""
        prob, j = self.prob, self.j
        starts = []
        for delta in (shift, np.zeros_like(shift)):
            s = np.clip(current.u + delta, prob.lo, prob.hi)
            s[j] = uj
            t = prob.terms(s)
            if t is not None:
                starts.append((t[0], s))
            if not np.any(delta):
                break
        if not starts:
            return None
        start = max(starts, key=lambda x: x[0])[1]
        return prob.maximise(j, uj, start)

    def crossing(self, inside, outside, z_in, z_out, points) -> float:
        """Secant steps on z(u_j) − z_c inside the bracket, then the crossing interpolated
        linearly in z (exact for a quadratic profile). Refinement points join `points`."""
        j, zc = self.j, self.zc
        for _ in range(self.refine):
            if abs(z_out - zc) < _Z_TOL or abs(outside.u[j] - inside.u[j]) < 1e-13:
                break
            w = (zc - z_in) / (z_out - z_in)
            uj = inside.u[j] + w * (outside.u[j] - inside.u[j])
            p = self.prob.maximise(j, uj, inside.u + w * (outside.u - inside.u))
            if p is None:
                break
            points.append(p)
            z = self.z(p)
            if z >= zc:
                outside, z_out = p, z
            else:
                inside, z_in = p, z
            if abs(z - zc) < _Z_TOL:
                break
        w = (zc - z_in) / (z_out - z_in) if z_out > z_in else 1.0
        return float(inside.u[j] + w * (outside.u[j] - inside.u[j]))


def _wald(fit_result: FitResult, alpha: float, kind: str):
    try:
        ci = fit_result.conf_int(alpha, kind)
    except (SingularFIMError, np.linalg.LinAlgError):
        n = len(fit_result.names)
        return np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    return ci.lower, ci.upper, ci.se


# -- the entry point -----------------------------------------------------------------------------
def profile_likelihood(
    fit_result: FitResult,
    names: Sequence[str] | str | None = None,
    *,
    alpha: float = 0.05,
    max_steps: int = 30,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    resolution: int = 6,
    max_step: float | None = None,
    refine: int = 6,
    kind: str = "expected",
) -> ProfileLikelihood:
    """Profile likelihoods and profile intervals of the parameters of a fit.

    **Arguments:**
    - `fit_result`: a `FitResult` from `fimkit.fit`; its model, data, noise and scale are used.
    - `names`: the parameters to profile (a name or a list; default all of the fit's).
    - `alpha`: the interval is where ℓ_p ≥ ℓ̂ − ½χ²₁(1−α) (1.92 for α = 0.05).
    - `max_steps`: the most steps on each side of the estimate (refinement steps not counted).
    - `bounds`: ``{name: (lower, upper)}`` on the linear scale, as in `fit`: a profiled parameter
      stops at its bound (that side is then open), another parameter is held within its bounds
      and each point where it sits on one is marked in `Profile.at_bound`.
    - `resolution`: about how many steps lead from the estimate to the threshold on each side
      (steps are equal in the signed root √(2(ℓ̂ − ℓ_p)) as predicted by the local curvature).
    - `max_step`: the longest step on the fit's scale (default 1.0 in log θ on the log scale,
      unlimited on the linear scale); steps also grow at most twofold from one to the next.
    - `refine`: the most secant steps that locate the threshold crossing once bracketed.
    - `kind`: the information behind the Wald interval shown for comparison (``"expected"``,
      ``"observed"`` or ``"sandwich"``, as in `FitResult.conf_int`).

    **Returns:** a `ProfileLikelihood`; ``result["k"]`` is the `Profile` of k, with its grid,
    profile values, re-optimised parameters, interval (open sides are ±inf and flagged), bound
    markers and the Wald interval; `.summary()` and `.plot()` present them.

    A profile that climbs above the fit's log-likelihood means the fit missed the maximum: a
    `ConvergenceWarning` says where, and the intervals are then measured from the fit's value.
    """
    if not isinstance(fit_result, FitResult):
        raise FimkitError(
            "The 'fit_result' argument of profile_likelihood must be a FitResult (from fimkit.fit). "
            f"Got {describe(fit_result)}."
        )
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise FimkitError(
            "The 'alpha' argument of profile_likelihood must be a number in the range (0, 1). "
            f"Got {describe(alpha)}."
        )
    all_names = fit_result.names
    todo = _check_names(names, all_names, "profile_likelihood")
    max_steps = _check_positive_int(max_steps, "max_steps", 1)
    resolution = _check_positive_int(resolution, "resolution", 1)
    refine = _check_positive_int(refine, "refine", 0)
    if kind not in ("expected", "observed", "sandwich"):
        raise FimkitError(
            "The 'kind' argument of profile_likelihood must be 'expected', 'observed' or "
            f"'sandwich'. Got {describe(kind)}."
        )
    scale = fit_result.scale
    if max_step is None:
        max_step = 1.0 if scale == "log" else np.inf
    elif isinstance(max_step, bool) or not isinstance(max_step, int | float) or not (max_step > 0):
        raise FimkitError(
            "The 'max_step' argument of profile_likelihood must be a number > 0 (on the fit's "
            f"scale). Got {describe(max_step)}."
        )
    lo, hi = _bounds(all_names, bounds, scale)
    u_hat = _to_u(fit_result.theta, scale)
    outside = [n for k, n in enumerate(all_names) if not lo[k] <= u_hat[k] <= hi[k]]
    if outside:
        raise FitError(
            f"The estimate lies outside the 'bounds' for {outside}: "
            f"{ {n: fit_result.params[n] for n in outside} }. Got bounds={bounds!r}."
        )

    zc = float(NormalDist().inv_cdf(1 - alpha / 2))
    drop = 0.5 * zc * zc  # ½χ²₁(1−α), since χ²₁ = z²
    lik = Likelihood.build(fit_result.model, fit_result.data, fit_result.noise)
    prob = _Problem(lik, scale, lo, hi)
    t = prob.terms(u_hat)
    if t is None:
        raise FitError(
            f"The log-likelihood cannot be evaluated at the fit's estimate {fit_result.params}."
        )
    lhat = t[0]
    wald_lo, wald_hi, wald_se = _wald(fit_result, alpha, kind)

    profiles = []
    for name in todo:
        j = all_names.index(name)
        top = _Point(u_hat.copy(), lhat, t[1], t[2], prob.bound_flags(u_hat, j), True)
        # The first step when the curvature says nothing (a flat profile).
        if scale == "log":
            first = min(max_step, 0.1)
        else:
            first = min(max_step, 0.1 * abs(u_hat[j]) if u_hat[j] != 0 else 0.1)
        tracer = _Tracer(prob, j, lhat, zc, zc / resolution, max_steps, max_step, first, refine)
        sides = {direction: tracer.side(top, direction) for direction in (-1, 1)}
        pts = [*sides[-1][0], top, *sides[1][0]]
        pts.sort(key=lambda p: p.u[j])
        values = np.array([p.value for p in pts])
        best = int(np.argmax(values))
        if values[best] > lhat + 1e-6 * max(1.0, abs(lhat)):
            where = dict(zip(all_names, _from_u(pts[best].u, scale).tolist(), strict=True))
            warnings.warn(
                f"The profile of {name!r} reaches a log-likelihood of {values[best]:.8g}, above the "
                f"fit's {lhat:.8g}, at {where}: the fit did not find the maximum. Refit from there "
                "(theta0=...) and profile again.",
                ConvergenceWarning,
                stacklevel=2,
            )
        ends = {}
        for direction, (_, why, crossing) in sides.items():
            if crossing is None:
                ends[direction] = (-np.inf if direction < 0 else np.inf), True, why
            else:
                ends[direction] = float(_from_u(crossing, scale)), False, why
        lower, open_lower, stop_lower = ends[-1]
        upper, open_upper, stop_upper = ends[1]
        if scale == "log" and open_lower:
            lower = 0.0
        profiles.append(
            Profile(
                name=name,
                names=all_names,
                scale=scale,
                alpha=float(alpha),
                drop=drop,
                estimate=float(fit_result.theta[j]),
                loglike_max=lhat,
                grid=np.array([float(_from_u(p.u[j], scale)) for p in pts]),
                loglike=values,
                theta=np.array([_from_u(p.u, scale) for p in pts]),
                at_bound=np.array([p.at_bound for p in pts], dtype=np.int8),
                converged=np.array([p.converged for p in pts]),
                lower=lower,
                upper=upper,
                open_lower=open_lower,
                open_upper=open_upper,
                stop_lower=stop_lower,
                stop_upper=stop_upper,
                wald_lower=float(wald_lo[j]),
                wald_upper=float(wald_hi[j]),
                wald_se=float(wald_se[j]),
            )
        )
    return ProfileLikelihood(tuple(profiles), todo, float(alpha), scale, lhat, drop)


__all__ = ["STOP_REASONS", "Profile", "ProfileLikelihood", "profile_likelihood"]
