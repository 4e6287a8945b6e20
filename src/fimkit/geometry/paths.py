"""Lengths of paths and geodesics in parameter space, with the Fisher information as the metric.

A path t ↦ θ(t) has the length L = ∫ sqrt(θ̇ᵀ I(θ) θ̇) dt, in units of statistical
distinguishability (BACKGROUND.md, "An Information-Theoretic Perspective"). `path_length` computes it
by adaptive Gauss–Kronrod quadrature with θ̇ from automatic differentiation of the user's path.

A geodesic is a path with zero covariant acceleration: θ̈ᵏ + Γᵏᵢⱼ θ̇ⁱ θ̇ʲ = 0. `geodesic` integrates it
with diffrax as a first-order system in (θ, v) and stops at the edge of the model manifold. Two forms
of the acceleration, both forward-mode automatic differentiation only (diffrax's ForwardMode
sensitivities through ODE models support no reverse mode):

- least squares (Gaussian or log-normal noise with known σ; Transtrum, Machta and Sethna, PRE 83,
  036701, 2011): with weighted residuals r(θ) and J = ∂r/∂θ the metric is JᵀJ and
  a = −(JᵀJ)⁻¹ Jᵀ A_vv, where A_vv = ∂²r/∂θ² [v, v] is the second directional derivative of the
  predictions along v (two nested jvps);
- Christoffel symbols of the full Fisher metric g (any noise model with a closed-form information,
  including variances that depend on θ): g a = −(∂_v g) v + ½ ∇(vᵀ g v).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import FimkitError, ParameterError, SingularFIMError, describe
from ..information.fim import _check_scale, format_direction
from ..models.base import STATUS_ADVICE, STATUS_MESSAGES, STATUS_OK
from ..noise import Gaussian, LogNormal
from ..prediction import Setup
from ..report.tables import Table, fmt

FORMS = ("auto", "least-squares", "christoffel")

# Why a geodesic stopped (`Geodesic.reason`).
REACHED_END = "t_end"
SPEED = "speed"
SINGULAR = "singular_metric"
PARAMETER_LIMIT = "parameter_limit"
EVENT = "event"
SOLVER = "solver"
REASONS = (REACHED_END, SPEED, SINGULAR, PARAMETER_LIMIT, EVENT, SOLVER)
BOUNDARY_REASONS = (SPEED, SINGULAR, PARAMETER_LIMIT)


# -- validation -------------------------------------------------------------------------------------
def _is_number(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, int | float | np.integer | np.floating)


def _positive(value: Any, argument: str, function: str, *, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if not _is_number(value) or not np.isfinite(value) or value <= 0:
        raise FimkitError(
            f"The '{argument}' argument of {function} must be a finite number > 0"
            f"{' or None' if allow_none else ''}. Got {describe(value)}."
        )
    return float(value)


def _vector(names: tuple[str, ...], value: Any, argument: str) -> np.ndarray:
    """A dict keyed by name or a vector in `names` order, as float64 (finite)."""
    from ..models.base import resolve_theta

    return resolve_theta(names, value, argument=argument)


def least_squares_noise(noise: Any) -> bool:
    """Whether the Fisher metric is JᵀJ of fixed-weight residuals (Gaussian or log-normal, known σ)."""
    return type(noise) in (Gaussian, LogNormal) and not noise.param_names


def _check_form(form: Any, setup: Setup) -> str:
    if form not in FORMS:
        raise FimkitError(
            f"The 'form' argument must be one of {list(FORMS)}. Got {describe(form)}."
        )
    if form == "auto":
        return "least-squares" if least_squares_noise(setup.noise) else "christoffel"
    if form == "least-squares" and not least_squares_noise(setup.noise):
        raise FimkitError(
            "form='least-squares' needs Gaussian or log-normal noise with a known σ (the metric is "
            f"then JᵀJ of fixed-weight residuals). Got noise {setup.noise}; use form='christoffel'."
        )
    return form


def _to_theta(scale: str) -> Callable:
    return jnp.exp if scale == "log" else (lambda x: x)


# -- the metric as a traced function of the coordinates ---------------------------------------------
def _residual_fn(setup: Setup, scale: str, times, dose_values) -> Callable:
    """x ↦ (weighted residual predictions √(n·w) · loc(θ(x)), status); for least-squares noise."""
    weights = jnp.asarray(setup.weights())
    to_theta = _to_theta(scale)

    def r(x):
        loc, disp, status = setup.location_dispersion(to_theta(x), times, dose_values)
        w_loc, _ = setup.noise._weights(loc, disp)
        # The weights are constant for least-squares noise: their derivative is exactly zero.
        return jnp.sqrt(weights * jax.lax.stop_gradient(w_loc)) * loc, status

    return r


def _metric_fn(setup: Setup, scale: str, times, dose_values) -> Callable:
    """x ↦ (Fisher information about the coordinates x, status): Sᵀ W S + Gᵀ W' G."""
    weights = jnp.asarray(setup.weights())
    to_theta = _to_theta(scale)

    def metric(x):
        def f(xx):
            loc, disp, status = setup.location_dispersion(to_theta(xx), times, dose_values)
            return jnp.concatenate([loc, disp]), (loc, disp, status)

        jac, (loc, disp, status) = jax.jacfwd(f, has_aux=True)(x)
        n = loc.shape[0]
        S, G = jac[:n], jac[n:]
        w_loc, w_disp = setup.noise._weights(loc, disp)
        g = S.T @ (S * (weights * w_loc)[:, None]) + G.T @ (G * (weights * w_disp)[:, None])
        return 0.5 * (g + g.T), status

    return metric


def _geometry(setup: Setup, scale: str, form: str, times, dose_values):
    """(metric(x) -> (g, status), acceleration(x, v) -> (a, status)) for the chosen form."""
    if form == "least-squares":
        r = _residual_fn(setup, scale, times, dose_values)

        def metric(x):
            J, status = jax.jacfwd(r, has_aux=True)(x)
            return J.T @ J, status

        def acceleration(x, v):
            # One trace of the model: the Jacobian of (r, J v) gives J and ∂(J v)/∂x, and
            # A_vv = ∂(J v)/∂x · v.
            def r_and_jv(xx):
                (rr, status), (jv, _) = jax.jvp(r, (xx,), (v,))
                return (rr, jv), status

            (J, djv), status = jax.jacfwd(r_and_jv, has_aux=True)(x)
            avv = djv @ v
            # lstsq on J (not a solve with JᵀJ): the condition number is that of J, not its square.
            a = -jnp.linalg.lstsq(J, avv)[0]
            return a, status

        return metric, acceleration

    g_fn = _metric_fn(setup, scale, times, dose_values)

    def acceleration(x, v):
        # One trace of the model: all first derivatives ∂_k g_ij, then ∂_v g = Σ_k v_k ∂_k g and
        # ∇_k (vᵀ g v) = vᵀ ∂_k g v.
        def g_with_value(xx):
            g, status = g_fn(xx)
            return g, (g, status)

        dg, (g, status) = jax.jacfwd(g_with_value, has_aux=True)(x)  # dg[i, j, k] = ∂_k g_ij
        dg_v = dg @ v
        grad = jnp.einsum("i,ijk,j->k", v, dg, v)
        a = jnp.linalg.solve(g, -(dg_v @ v) + 0.5 * grad)
        return a, status

    return g_fn, acceleration


def _metric_program(setup: Setup, scale: str):
    def run(x, times, dose_values):
        g_fn = _metric_fn(setup, scale, times, dose_values)
        return jax.vmap(g_fn)(x)

    return run


def _acceleration_program(setup: Setup, scale: str, form: str):
    def run(x, v, times, dose_values):
        _, acceleration = _geometry(setup, scale, form, times, dose_values)
        return acceleration(x, v)

    return run


def initial_acceleration(
    setup: Setup, x: np.ndarray, v: np.ndarray, scale: str, form: str
) -> np.ndarray:
    """The geodesic acceleration at coordinates `x` with velocity `v`."""
    program = setup.compiled(
        f"geometry-acceleration-{scale}-{form}", lambda s: _acceleration_program(s, scale, form)
    )
    a, status = program(jnp.asarray(x), jnp.asarray(v), setup.times(), setup.dose_values)
    setup.check_status(status, np.exp(x) if scale == "log" else x)
    return np.asarray(a)


_METRIC_BATCH = 8  # rows per call of the compiled metric program: one shape, one compilation


def metric_batch(setup: Setup, x: np.ndarray, scale: str) -> tuple[np.ndarray, np.ndarray]:
    """Fisher metrics about the coordinates at each row of `x`, and the simulation statuses."""
    program = setup.compiled(f"geometry-metric-{scale}", lambda s: _metric_program(s, scale))
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    pad = (-n) % _METRIC_BATCH
    padded = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) if pad else x
    gs, statuses = [], []
    for start in range(0, padded.shape[0], _METRIC_BATCH):
        g, status = program(
            jnp.asarray(padded[start : start + _METRIC_BATCH]), setup.times(), setup.dose_values
        )
        gs.append(np.asarray(g))
        statuses.append(np.asarray(status))
    return np.concatenate(gs)[:n], np.concatenate(statuses)[:n]


# -- path length ------------------------------------------------------------------------------------
# Gauss–Kronrod 7–15 nodes on [-1, 1] (QUADPACK qk15): Kronrod nodes, Kronrod weights, and the
# weights of the embedded 7-point Gauss rule on the odd-indexed nodes.
_XK = np.array(
    [
        0.991455371120812639206854697526329,
        0.949107912342758524526189684047851,
        0.864864423359769072789712788640926,
        0.741531185599394439863864773280788,
        0.586087235467691130294144845693013,
        0.405845151377397166906606412076961,
        0.207784955007898467600689403773245,
        0.000000000000000000000000000000000,
    ]
)
_WK = np.array(
    [
        0.022935322010529224963732008058970,
        0.063092092629978553290700663189204,
        0.104790010322250183839876322541518,
        0.140653259715525918745189590510238,
        0.169004726639267902826583426598550,
        0.190350578064785409913256402421014,
        0.204432940075298892414161999234649,
        0.209482141084727828012999174891714,
    ]
)
_WG = np.array(
    [
        0.129484966168869693270611432679082,
        0.279705391489276667901467771423780,
        0.381830050505118944950369775488975,
        0.417959183673469387755102040816327,
    ]
)
_NODES = np.concatenate([-_XK[:-1], _XK[::-1]])  # 15 nodes, ascending
_W15 = np.concatenate([_WK[:-1], _WK[::-1]])
_W7 = np.zeros(15)
_W7[[1, 3, 5, 7, 9, 11, 13]] = np.concatenate([_WG[:-1], _WG[::-1]])
_CHUNK = 120  # evaluation points per compiled call (8 intervals): one shape, one compilation


@dataclass(frozen=True)
class PathLength:
    """The Fisher–Rao length of a path, by adaptive Gauss–Kronrod quadrature.

    **Fields:** `length`, `error` (the quadrature's error estimate), `t_span`, `names`,
    `n_evaluations` (metric evaluations), `n_intervals` (subintervals at the end).
    """

    length: float
    error: float
    t_span: tuple[float, float]
    names: tuple[str, ...]
    n_evaluations: int
    n_intervals: int

    def __float__(self) -> float:
        return self.length

    def __str__(self) -> str:
        return (
            f"path length {self.length:.8g} ± {self.error:.2g} (Gauss–Kronrod, "
            f"{self.n_intervals} intervals, {self.n_evaluations} evaluations) over t in "
            f"[{self.t_span[0]:g}, {self.t_span[1]:g}]"
        )


def _path_callable(path: Any, names: tuple[str, ...]) -> Callable:
    if not callable(path):
        raise FimkitError(
            "The 'path' argument of path_length must be a function t -> theta (a dict keyed by "
            f"parameter name, or a vector in the order {list(names)}). Got {describe(path)}."
        )

    def as_vector(t):
        out = path(t)
        if isinstance(out, Mapping):
            missing = [n for n in names if n not in out]
            unknown = [k for k in out if k not in names]
            if missing or unknown:
                raise ParameterError(
                    "The 'path' function must return every parameter "
                    f"{list(names)}; missing {missing}, unknown {unknown}."
                )
            return jnp.stack([jnp.asarray(out[n], dtype=jnp.float64) for n in names])
        v = jnp.asarray(out, dtype=jnp.float64)
        if v.shape != (len(names),):
            raise ParameterError(
                f"The 'path' function must return {len(names)} values (parameters {list(names)}) "
                f"for a scalar t. Got shape {v.shape}."
            )
        return v

    return as_vector


def path_length(
    model: Any,
    path: Callable[[Any], Any],
    design: Any,
    *,
    noise: Any,
    t_span: tuple[float, float] = (0.0, 1.0),
    rtol: float = 1e-8,
    atol: float = 1e-12,
    max_intervals: int = 400,
) -> PathLength:
    """The length L = ∫ sqrt(θ̇ᵀ I(θ) θ̇) dt of a path through parameter space.

    **Arguments:**
    - `model`, `design`, `noise`: as for `fisher_information`.
    - `path`: ``path(t)`` returns θ at time t, a dict keyed by parameter name or a vector over
      ``parameter_names(model, noise)`` (linear-scale values); written with `jax.numpy`, since θ̇
      is its derivative by automatic differentiation.
    - `t_span`: the interval (t0, t1) of the path parameter.
    - `rtol`, `atol`: the target accuracy of the adaptive Gauss–Kronrod (7–15) quadrature.
    - `max_intervals`: the most subintervals; the result reports its error estimate either way.

    **Returns:** a `PathLength` (`length`, `error`, ...). The length does not depend on how the
    path is parametrised. A path that leaves the parameter domain (a noise parameter ≤ 0, a
    model that cannot be simulated, non-finite values) raises `ParameterError` with the first t.
    """
    setup = Setup.build(model, design, noise)
    names = setup.names
    try:
        t0, t1 = (float(x) for x in t_span)
    except (TypeError, ValueError) as exc:
        raise FimkitError(
            f"The 't_span' argument of path_length must be a pair (t0, t1). Got {describe(t_span)}."
        ) from exc
    if not (np.isfinite(t0) and np.isfinite(t1) and t0 < t1):
        raise FimkitError(
            f"The 't_span' argument of path_length must be finite with t0 < t1. Got ({t0}, {t1})."
        )
    rtol = _positive(rtol, "rtol", "path_length")
    atol = float(atol) if _is_number(atol) and atol >= 0 else None
    if atol is None:
        raise FimkitError(f"The 'atol' argument of path_length must be >= 0. Got {describe(atol)}.")
    if isinstance(max_intervals, bool) or not isinstance(max_intervals, int) or max_intervals < 1:
        raise FimkitError(
            "The 'max_intervals' argument of path_length must be an integer >= 1. Got "
            f"{describe(max_intervals)}."
        )
    as_vector = _path_callable(path, names)
    # The path is the user's (a new function each call): its small program is compiled here; the
    # metric program is the model's, compiled once per structure and cached.
    path_program = jax.jit(jax.vmap(lambda t: (as_vector(t), jax.jacfwd(as_vector)(t))))
    noise_index = [names.index(n) for n in setup.noise.param_names]
    n_evals = 0

    def speeds(ts: np.ndarray) -> np.ndarray:
        nonlocal n_evals
        out = np.empty(ts.size)
        for start in range(0, ts.size, _CHUNK):
            chunk = ts[start : start + _CHUNK]
            padded = np.concatenate([chunk, np.full(_CHUNK - chunk.size, chunk[-1])])
            th, dth = (np.asarray(a) for a in path_program(jnp.asarray(padded)))
            th, dth = th[: chunk.size], dth[: chunk.size]
            _check_domain(setup, chunk, th, dth, noise_index)
            g, status = metric_batch(setup, th, "lin")
            _check_simulated(setup, chunk, th, g, status)
            q = np.einsum("ki,kij,kj->k", dth, g, dth)
            out[start : start + chunk.size] = np.sqrt(np.maximum(q, 0.0))
            n_evals += chunk.size
        return out

    def rule(intervals: list[tuple[float, float]]):
        a = np.array([iv[0] for iv in intervals])
        b = np.array([iv[1] for iv in intervals])
        half, mid = 0.5 * (b - a), 0.5 * (a + b)
        ts = (mid[:, None] + half[:, None] * _NODES[None, :]).reshape(-1)
        y = speeds(ts).reshape(len(intervals), 15)
        k15 = half * (y @ _W15)
        g7 = half * (y @ _W7)
        return k15, np.abs(k15 - g7)

    # Start from 8 equal pieces (one compiled chunk), then bisect the intervals that carry the error.
    edges = np.linspace(t0, t1, 9)
    intervals = list(itertools.pairwise(edges))
    values, errors = rule(intervals)
    values, errors = list(values), list(errors)
    while True:
        total, err = float(np.sum(values)), float(np.sum(errors))
        if err <= max(atol, rtol * abs(total)) or len(intervals) >= max_intervals:
            break
        order = np.argsort(errors)[::-1]
        # Split the worst intervals (at most 4 per round: one compiled chunk of 8 halves).
        worst = [int(i) for i in order[: min(4, max_intervals - len(intervals))]]
        halves = []
        for i in worst:
            a, b = intervals[i]
            m = 0.5 * (a + b)
            halves += [(a, m), (m, b)]
        v_new, e_new = rule(halves)
        keep = [i for i in range(len(intervals)) if i not in worst]
        intervals = [intervals[i] for i in keep] + halves
        values = [values[i] for i in keep] + list(v_new)
        errors = [errors[i] for i in keep] + list(e_new)
    return PathLength(total, err, (t0, t1), names, n_evals, len(intervals))


def _check_domain(setup, ts, th, dth, noise_index) -> None:
    bad = ~(np.all(np.isfinite(th), axis=1) & np.all(np.isfinite(dth), axis=1))
    if noise_index:
        bad |= np.any(th[:, noise_index] <= 0, axis=1)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        point = dict(zip(setup.names, th[k].tolist(), strict=True))
        why = (
            "non-finite values or derivative"
            if not (np.all(np.isfinite(th[k])) and np.all(np.isfinite(dth[k])))
            else f"the noise parameters {list(setup.noise.param_names)} must be > 0"
        )
        raise ParameterError(
            f"The path leaves the parameter domain at t={ts[k]:.6g}: theta={point} ({why})."
        )


def _check_simulated(setup, ts, th, g, status) -> None:
    failed = np.any(status != STATUS_OK, axis=1)
    bad = failed | ~np.all(np.isfinite(g), axis=(1, 2))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        point = dict(zip(setup.names, th[k].tolist(), strict=True))
        s = int(status[k][status[k] != STATUS_OK][0]) if failed[k] else STATUS_OK
        why = (
            f"{STATUS_MESSAGES[s]}. {STATUS_ADVICE[s]}"
            if s != STATUS_OK
            else "the Fisher information is not finite there (a variance or a mean at the edge of "
            "its domain)"
        )
        raise ParameterError(
            f"The path leaves the parameter domain at t={ts[k]:.6g}: theta={point}: {why}"
        )


# -- geodesics --------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Geodesic:
    """A geodesic of the Fisher metric, sampled at output times.

    **Fields:**
    - `names`: parameter names (columns of `theta` and `velocity`).
    - `t`: the output times (the last one is where the integration stopped).
    - `theta`: the path, one row per output time (linear-scale values, in `names` order).
    - `velocity`: d(coordinates)/dt, on `scale` (d log θ/dt for ``scale="log"``).
    - `scale`: the coordinates the geodesic was integrated in.
    - `speed`: the metric speed sqrt(vᵀ g v) at each output time: constant along an exact geodesic,
      so its drift measures the integration error.
    - `eigenvalue_ratio`: λmin/λmax of the metric at each output time.
    - `metric_end`: the metric (about the coordinates) at the last point.
    - `reason`: why it stopped, one of ``"t_end"``, ``"speed"`` (the parameter-space speed grew
      past `speed_limit` × its start: the metric is degenerating, a boundary is near),
      ``"singular_metric"``, ``"parameter_limit"`` (a log parameter ran towards 0 or ∞),
      ``"event"`` (the user's), ``"solver"`` (the integration failed); `message` says it in words.
    - `form`: ``"least-squares"`` or ``"christoffel"``; `n_steps`: integrator steps.
    """

    names: tuple[str, ...]
    t: np.ndarray
    theta: np.ndarray
    velocity: np.ndarray
    scale: str
    speed: np.ndarray
    eigenvalue_ratio: np.ndarray
    metric_end: np.ndarray
    reason: str
    message: str
    form: str
    n_steps: int

    @property
    def coordinates(self) -> np.ndarray:
        """The path in the integration coordinates (log θ for ``scale="log"``)."""
        return np.log(self.theta) if self.scale == "log" else self.theta

    @property
    def length(self) -> np.ndarray:
        """Arc length from the start to each output time (the trapezoid rule on `speed`)."""
        dt = np.diff(self.t)
        return np.concatenate([[0.0], np.cumsum(0.5 * dt * (self.speed[1:] + self.speed[:-1]))])

    @property
    def distance(self) -> float:
        """Arc length to the last point: speed at the start × the time reached."""
        return float(self.speed[0] * (self.t[-1] - self.t[0]))

    @property
    def at_boundary(self) -> bool:
        """Whether the geodesic stopped because the manifold's edge is near."""
        return self.reason in BOUNDARY_REASONS

    @property
    def end(self) -> dict[str, float]:
        """The last point, by name."""
        return dict(zip(self.names, self.theta[-1].tolist(), strict=True))

    def null_direction(self) -> np.ndarray:
        """The unit eigenvector of the smallest metric eigenvalue at the last point (coordinates):
        the direction the data stop seeing as the geodesic runs into a boundary."""
        _w, v = np.linalg.eigh(self.metric_end)
        d = v[:, 0]
        k = int(np.argmax(np.abs(d)))
        return d * np.sign(d[k])

    def summary(self) -> Table:
        coord = "log " if self.scale == "log" else ""
        rows = tuple(
            (
                n,
                fmt(self.theta[0, j]),
                fmt(self.theta[-1, j]),
                fmt(self.velocity[0, j]),
                fmt(self.velocity[-1, j]),
            )
            for j, n in enumerate(self.names)
        )
        notes = (
            f"stopped at t = {self.t[-1]:.6g}: {self.message}",
            f"arc length {self.distance:.6g}; metric speed drift "
            f"{np.max(np.abs(self.speed / self.speed[0] - 1)):.2g} (relative); "
            f"λmin/λmax {self.eigenvalue_ratio[0]:.3g} at the start, "
            f"{self.eigenvalue_ratio[-1]:.3g} at the end",
            f"{self.form} form, {self.n_steps} steps; the sloppiest direction of the metric at the "
            "end: "
            f"{format_direction(self.null_direction(), [coord + n for n in self.names])}",
        )
        return Table(
            "Geodesic",
            ("parameter", "start", "end", f"d{coord}θ/dt start", f"d{coord}θ/dt end"),
            rows,
            notes,
        )

    def __str__(self) -> str:
        return str(self.summary())


def _geodesic_program(
    setup: Setup,
    *,
    scale: str,
    form: str,
    n_out: int,
    rtol: float,
    atol: float,
    max_steps: int,
    event: Callable | None,
):
    """The jitted geodesic solve; the stopping thresholds are traced (no recompilation)."""
    import diffrax
    import optimistix as optx

    to_theta = _to_theta(scale)

    def run(x0, v0, t_end, limits, times, dose_values):
        # limits: log(speed limit), max change of log θ; a disabled one is huge.
        log_speed_limit, max_log_change = limits[0], limits[1]
        _, acceleration = _geometry(setup, scale, form, times, dose_values)

        def field(t, y, args):
            x, v = y
            a, status = acceleration(x, v)
            # An unsimulable point makes the step non-finite: the controller rejects it.
            a = jnp.where(jnp.all(status == STATUS_OK), a, jnp.nan)
            return v, a

        speed0 = jnp.linalg.norm(v0)

        # The stopping conditions never evaluate the model, so the root find on the dense solution
        # (Newton, differentiating the conditions) stays cheap to compile even for ODE models:
        # a continuous one, negative while the geodesic runs (the larger of "the speed grew past
        # its limit" and "a log parameter moved past its limit"), and the user's boolean event,
        # which stops at the end of the step where it becomes true. A singular metric is found on
        # the host from the metric along the path.
        def stop(t, y, args, **kw):
            x, v = y
            value = jnp.log(jnp.linalg.norm(v) / speed0) - log_speed_limit
            if scale == "log":
                value = jnp.maximum(value, jnp.max(jnp.abs(x - x0)) - max_log_change)
            return value

        conds: tuple[Callable, ...] = (stop,)
        if event is not None:

            def user(t, y, args, **kw):
                p = dict(zip(setup.names, to_theta(y[0]), strict=True))
                return jnp.asarray(event(t, p), dtype=bool)

            conds = (stop, user)
        ev = diffrax.Event(conds, root_finder=optx.Newton(rtol=1e-10, atol=1e-12))

        ts = jnp.linspace(0.0, t_end, n_out)
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(field),
            diffrax.Tsit5(),
            t0=0.0,
            t1=t_end,
            dt0=t_end / n_out,
            y0=(x0, v0),
            saveat=diffrax.SaveAt(ts=ts, t1=True),
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
            event=ev,
            max_steps=max_steps,
            throw=False,
        )
        event_hit = sol.result == diffrax.RESULTS.event_occurred
        ok = (sol.result == diffrax.RESULTS.successful) | event_hit
        return sol.ts, sol.ys, ok, event_hit, sol.stats["num_steps"]

    return run


def geodesic(
    model: Any,
    theta0: Any,
    velocity0: Any,
    design: Any,
    *,
    noise: Any,
    t_end: float = 1.0,
    scale: str = "lin",
    n_points: int = 101,
    form: str = "auto",
    speed_limit: float | None = 1e3,
    max_log_change: float | None = math.log(1e6),
    rcond: float = 1e-12,
    event: Callable[[Any, dict], Any] | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 16384,
) -> Geodesic:
    """Follow the geodesic of the Fisher metric from `theta0` with initial velocity `velocity0`.

    **Arguments:**
    - `model`, `design`, `noise`: as for `fisher_information`.
    - `theta0`: the start (dict or vector over ``parameter_names(model, noise)``, linear scale).
    - `velocity0`: the initial velocity in the coordinates of `scale` (d log θ/dt for
      ``scale="log"``), a dict or a vector; its metric length is the speed along the geodesic.
    - `t_end`: the largest time to integrate to.
    - `scale`: ``"lin"`` (coordinates θ) or ``"log"`` (coordinates log θ; parameters stay positive).
    - `n_points`: output times, evenly spaced in [0, t_end], plus the stopping time.
    - `form`: ``"least-squares"`` (Transtrum's form, for Gaussian or log-normal noise with known σ),
      ``"christoffel"`` (the Christoffel symbols of the full Fisher metric, any closed-form noise
      model), or ``"auto"`` (the first where it applies).
    - `speed_limit`: stop when the parameter-space speed |v| has grown by this factor (the geodesic
      is running into a boundary where the metric degenerates); None to never stop for it.
    - `max_log_change`: on the log scale, stop when a parameter has moved by more than this in
      log θ (it is running to 0 or ∞); None to never stop for it.
    - `rcond`: the path ends at the first output point where λmin/λmax of the metric is below this
      (the metric is singular there).
    - `event`: ``event(t, p)`` with `p` the parameters by name (linear scale) returns a boolean
      (written with `jax.numpy`); the integration stops at the end of the step where it becomes
      true. (The speed and parameter limits are located exactly, by a root find.)
    - `rtol`, `atol`, `max_steps`: the integrator's (Tsit5 with a PID step-size controller).

    **Returns:** a `Geodesic` (`t`, `theta`, `velocity`, `reason`, `message`, `speed`, ...).

    A singular Fisher information at the start raises `SingularFIMError` naming the null direction;
    a zero or non-finite velocity raises `ParameterError`.
    """
    scale = _check_scale(scale)
    setup = Setup.build(model, design, noise)
    form = _check_form(form, setup)
    th0 = setup.theta(theta0, positive=(scale == "log"))
    v0 = _vector(setup.names, velocity0, "velocity0")
    if not np.any(v0 != 0):
        raise ParameterError(
            "The 'velocity0' argument of geodesic must be non-zero: a geodesic with zero velocity "
            f"stays at theta0. Got {dict(zip(setup.names, v0.tolist(), strict=True))}."
        )
    t_end = _positive(t_end, "t_end", "geodesic")
    speed_limit = _positive(speed_limit, "speed_limit", "geodesic", allow_none=True)
    if speed_limit is not None and speed_limit <= 1:
        raise FimkitError(
            f"The 'speed_limit' argument of geodesic must be > 1 (a growth factor). Got {speed_limit}."
        )
    max_log_change = _positive(max_log_change, "max_log_change", "geodesic", allow_none=True)
    rcond = _positive(rcond, "rcond", "geodesic")
    if rcond >= 1:
        raise FimkitError(f"The 'rcond' argument of geodesic must be in (0, 1). Got {rcond}.")
    rtol = _positive(rtol, "rtol", "geodesic")
    atol = _positive(atol, "atol", "geodesic")
    for arg, value, low in (("n_points", n_points, 2), ("max_steps", max_steps, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise FimkitError(
                f"The '{arg}' argument of geodesic must be an integer >= {low}. Got {describe(value)}."
            )
    if event is not None and not callable(event):
        raise FimkitError(
            f"The 'event' argument of geodesic must be a function event(t, p) -> bool. Got "
            f"{describe(event)}."
        )
    x0 = np.log(th0) if scale == "log" else th0
    check_start(setup, x0, scale, rcond, "geodesic")
    key = (
        f"geodesic-{scale}-{form}-{n_points}-{rtol!r}-{atol!r}-{max_steps}-"
        f"{id(event) if event is not None else None}"
    )
    options = dict(
        scale=scale,
        form=form,
        n_out=n_points,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        event=event,
    )
    disabled = 1e300
    limits = np.array(
        [
            math.log(speed_limit) if speed_limit is not None else disabled,
            max_log_change if max_log_change is not None else disabled,
        ]
    )
    program = setup.compiled(key, lambda s: _geodesic_program(s, **options))
    ts, (xs, vs), ok, event_hit, n_steps = program(
        jnp.asarray(x0),
        jnp.asarray(v0),
        jnp.asarray(t_end),
        jnp.asarray(limits),
        setup.times(),
        setup.dose_values,
    )
    ts, xs, vs = (np.asarray(a) for a in (ts, xs, vs))
    keep = np.isfinite(ts) & np.all(np.isfinite(xs), axis=1)
    ts, xs, vs = ts[keep], xs[keep], vs[keep]
    # SaveAt(ts, t1) repeats the last output time when the integration reached t_end.
    if ts.size >= 2 and ts[-1] == ts[-2]:
        ts, xs, vs = ts[:-1], xs[:-1], vs[:-1]
    # The metric along the path from the model's metric program (compiled once, shared with the
    # check at the start) rather than inside the solve.
    gs, _ = metric_batch(setup, xs, scale)
    theta = np.exp(xs) if scale == "log" else xs
    w = np.linalg.eigvalsh(gs)
    ratio = np.maximum(w[:, 0], 0.0) / np.maximum(w[:, -1], np.finfo(float).tiny)
    if not bool(ok):
        reason = SOLVER
    elif bool(event_hit):
        reason = _which_stop(
            setup.names, ts[-1], xs, vs, theta[-1], scale, speed_limit, max_log_change, event
        )
    else:
        reason = REACHED_END
    # The metric is checked along the output points: the path ends at the first singular one.
    singular = np.flatnonzero(ratio < rcond)
    if singular.size:
        k = int(singular[0]) + 1
        ts, xs, vs, gs, theta, ratio = ts[:k], xs[:k], vs[:k], gs[:k], theta[:k], ratio[:k]
        reason = SINGULAR
    q = np.einsum("ki,kij,kj->k", vs, gs, vs)
    speed = np.sqrt(np.maximum(q, 0.0))
    message = _stop_message(
        reason, setup.names, scale, xs, vs, ts, speed_limit, max_log_change, rcond, ratio, gs
    )
    return Geodesic(
        setup.names,
        ts,
        theta,
        vs,
        scale,
        speed,
        ratio,
        gs[-1],
        reason,
        message,
        form,
        int(n_steps),
    )


def _which_stop(names, t, xs, vs, theta, scale, speed_limit, max_log_change, event):
    """Which stopping condition fired at the final state (the one the root find landed on)."""
    if event is not None and bool(np.asarray(event(t, dict(zip(names, theta, strict=True))))):
        return EVENT
    # A continuous condition sits at its root, within the root find's tolerance.
    slack = 1e-6
    if scale == "log" and max_log_change is not None:
        if np.max(np.abs(xs[-1] - xs[0])) >= max_log_change - slack:
            return PARAMETER_LIMIT
    return SPEED


def check_start(
    setup: Setup, x0: np.ndarray, scale: str, rcond: float, function: str
) -> np.ndarray:
    """The metric at the start; raises for an unsimulable start or a singular metric there."""
    g, status = metric_batch(setup, x0[None, :], scale)
    g = g[0]
    th = np.exp(x0) if scale == "log" else x0
    setup.check_status(status[0], th)
    if not np.all(np.isfinite(g)):
        raise FimkitError(
            f"The Fisher information is not finite at the start of the {function}: theta="
            f"{dict(zip(setup.names, th.tolist(), strict=True))}."
        )
    w, v = np.linalg.eigh(g)
    if w[0] <= rcond * max(w[-1], np.finfo(float).tiny):
        coord = "log " if scale == "log" else ""
        null = v[:, w <= rcond * max(w[-1], np.finfo(float).tiny)]
        dirs = "; ".join(
            format_direction(null[:, j], [coord + n for n in setup.names])
            for j in range(null.shape[1])
        )
        raise SingularFIMError(
            f"The Fisher information is singular at the start of the {function} (λmin/λmax = "
            f"{max(w[0], 0.0) / max(w[-1], np.finfo(float).tiny):.3g} <= rcond {rcond:g}): the "
            f"metric cannot define a geodesic there. The data do not determine the direction(s) "
            f"[{dirs}]; fix a parameter along it, or start elsewhere.",
            null_directions=null,
        )
    return g


def _stop_message(reason, names, scale, xs, vs, ts, speed_limit, max_log_change, rcond, ratio, gs):
    coord = "log " if scale == "log" else ""
    t = ts[-1]
    if reason == REACHED_END:
        return f"reached t_end = {t:.6g}"
    if reason == SPEED:
        growth = np.linalg.norm(vs[-1]) / np.linalg.norm(vs[0])
        v = vs[-1] / np.linalg.norm(vs[-1])
        return (
            f"the parameter-space speed grew {growth:.3g}-fold (speed_limit {speed_limit:g}) at "
            f"t = {t:.6g}: the metric is degenerating (λmin/λmax {ratio[-1]:.3g}), a boundary of the "
            f"model manifold is near; moving along {format_direction(v, [coord + n for n in names])}"
        )
    if reason == SINGULAR:
        w0 = np.linalg.eigvalsh(gs[0])
        w, v = np.linalg.eigh(gs[-1])
        labels = [coord + n for n in names]
        # Degenerate either way: an eigenvalue that vanished, or one that blew up.
        shrink = w0[0] / max(w[0], np.finfo(float).tiny)
        grow = w[-1] / w0[-1]
        how = (
            f"it vanishes along {format_direction(v[:, 0], labels)}"
            if shrink >= grow
            else f"it blows up along {format_direction(v[:, -1], labels)}"
        )
        return (
            f"the metric became singular at t = {t:.6g} (λmin/λmax {ratio[-1]:.3g} < rcond "
            f"{rcond:g}): {how}"
        )
    if reason == PARAMETER_LIMIT:
        d = xs[-1] - xs[0]
        j = int(np.argmax(np.abs(d)))
        where = "∞" if d[j] > 0 else "0"
        return (
            f"{names[j]} is running to {where}: log {names[j]} moved by {d[j]:+.3g} (max_log_change "
            f"{max_log_change:.3g}) by t = {t:.6g}"
        )
    if reason == EVENT:
        return f"the user's event fired at t = {t:.6g}"
    return (
        f"the integration failed at t = {t:.6g} (step size collapsed, max_steps reached, or the "
        "model could not be simulated: the path may have left the parameter domain)"
    )


__all__ = [
    "BOUNDARY_REASONS",
    "REASONS",
    "Geodesic",
    "PathLength",
    "geodesic",
    "least_squares_noise",
    "path_length",
]
