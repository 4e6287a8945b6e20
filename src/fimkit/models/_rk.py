"""A lean adaptive Runge–Kutta integrator for the default explicit solver (Tsit5).

Why fimkit has its own loop: a Fisher information needs one solve of the model and its forward
sensitivities, and for the small systems of systems biology and pharmacometrics the cost of that
solve is the bookkeeping of a general-purpose solver loop, not arithmetic. This loop does only what
the FIM needs: Tsitouras' 5(4) pair with first-same-as-last stages, an integral step-size controller
on the error estimate of the states, the method's dense output for the sampling times (so the step
sequence never depends on where the samples are, and derivatives with respect to sampling times
come from the interpolant), and a status code instead of an exception. It computes the same
numbers as ``diffrax.Tsit5`` with ``diffrax.PIDController`` (the tests check both agree), in about
a third of the time.

Sensitivities come from forward-mode automatic differentiation through the loop (``jax.jvp`` or
``jax.jacfwd`` of the caller): the step sizes are chosen on the primal solution only
(`stop_gradient`), so the tangents are the exact derivatives of the discrete solution for that
step sequence. Reverse mode is not supported (``lax.while_loop``), as with ``diffrax.ForwardMode``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .base import STATUS_MAX_STEPS, STATUS_OK, STATUS_SOLVER_FAILED

# Tsitouras (2011), "Runge–Kutta pairs of order 5(4) satisfying only the first column
# simplifying assumption", Computers & Mathematics with Applications 62, 770–775.
_C = np.array([0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0])
_A = (
    (),
    (0.161,),
    (-0.008480655492356989, 0.335480655492357),
    (2.897153057105493, -6.359448489975075, 4.3622954328695815),
    (5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525),
    (
        5.86145544294642,
        -12.92096931784711,
        8.159367898576159,
        -0.071584973281401,
        -0.028269050394068383,
    ),
    (
        0.09646076681806523,
        0.01,
        0.4798896504144996,
        1.379008574103742,
        -3.290069515436081,
        2.324710524099774,
    ),
)
_B = np.array([*_A[6], 0.0])
# b - b̂: the difference between the 5th- and the embedded 4th-order weights.
_E = np.array(
    [
        -0.00178001105222577714,
        -0.0008164344596567469,
        0.007880878010261995,
        -0.1447110071732629,
        0.5823571654525552,
        -0.45808210592918697,
        1.0 / 66.0,
    ]
)
# Dense output of the same paper: b_i(θ) = Σ_k R[i, k] θ^(k+1), with b_i(1) = b_i.
_R = np.array(
    [
        [1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216],
        [0.0, 0.13169999999999998, -0.2234, 0.1017],
        [0.0, 3.930296236894751, -5.941033872131505, 2.490627285651253],
        [0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902],
        [0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928],
        [0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661],
        [0.0, 1.5, -4.0, 2.5],
    ]
)
ERROR_ORDER = 5  # the local error estimate is O(h^5)

# The step-size controller: the integral controller of diffrax's PIDController defaults.
SAFETY, FACTOR_MIN, FACTOR_MAX = 0.9, 0.2, 10.0


def _rms(x):
    return jnp.sqrt(jnp.mean(x * x))


def _identity(y):
    return y


def _initial_step(field, t0, y0, f0, args, rtol, atol, primal=_identity):
    """Hairer, Nørsett & Wanner's starting step (Solving ODEs I, II.4), on the primal solution."""
    y0p, f0p = primal(y0), primal(f0)
    scale = atol + rtol * jnp.abs(y0p)
    d0, d1 = _rms(y0p / scale), _rms(f0p / scale)
    h0 = jnp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / jnp.maximum(d1, 1e-300))
    f1 = primal(field(t0 + h0, y0 + h0 * f0, args))
    d2 = _rms((f1 - f0p) / scale) / h0
    dmax = jnp.maximum(d1, d2)
    h1 = jnp.where(
        dmax <= 1e-15,
        jnp.maximum(1e-6, h0 * 1e-3),
        (0.01 / jnp.maximum(dmax, 1e-300)) ** (1.0 / ERROR_ORDER),
    )
    return jnp.minimum(100 * h0, h1)


def adaptive_loop(
    step: Callable[[Any, Any, Any, Any], tuple[Any, Any, Any, Any]],
    interpolate: Callable[[Any, Any, Any, Any, Any], Any],
    field: Callable[[Any, Any, Any], Any],
    t0: Any,
    t1: Any,
    y0: Any,
    ts: Any,
    args: Any,
    *,
    rtol: float,
    atol: float,
    max_steps: int,
    error_order: float,
    factor_max: float = FACTOR_MAX,
    check_state: bool = False,
    unreached: float = 0.0,
    terminate: Callable[[Any, Any, Any], Any] | None = None,
    primal: Callable[[Any], Any] = _identity,
    indexed_samples: bool = False,
):
    """The adaptive step loop shared by fimkit's integrators (`tsit5_solve`, `_rosenbrock`).

    - ``step(t, y, f, h) -> (y1, err, dense, f1)``: one step of size h from (t, y), where `f` is
      the carried first-same-as-last value (f(t, y) to start with; a method without one returns it
      unchanged), `err` the local error estimate and `dense` what `interpolate` needs;
    - ``interpolate(theta, y, y1, h, dense)``: the state at t + θh of an accepted step (with
      `indexed_samples`, ``interpolate(theta, y, y1, h, dense, i)`` for sample ``ts[i]``).

    The error norm is RMS(err / (atol + rtol·max(|y|, |y1|))), the controller the integral one
    (exponent −1/`error_order`, factors within [FACTOR_MIN, `factor_max`]), computed on the primal
    solution only (`stop_gradient`). After each accepted step the samples it covers get the
    interpolant, so the step sequence never depends on the sampling times. `check_state` also
    rejects steps with a non-finite state; samples the solve never reaches hold `unreached`;
    `terminate(t, y, args)`, when given, stops the loop after the first accepted step where it holds.
    `primal(y)` is the part of the state the step size control watches (all of it by default; the
    solution rows of a state augmented with its sensitivities, see `tsit5_solve`).

    Returns ``(ys, y, t, status, done)``: the states at `ts` (sorted, within [t0, t1]), the state
    and time where the loop stopped, a status code of `fimkit.models.base`, and whether
    `terminate` held.
    """
    sg = jax.lax.stop_gradient
    n_ts = ts.shape[0]
    dtype = jnp.result_type(y0, float)
    y0 = jnp.asarray(y0, dtype=dtype)
    t0 = jnp.asarray(t0, dtype=dtype)
    t1 = jnp.asarray(t1, dtype=dtype)
    f0 = field(t0, y0, args)
    h_init = sg(_initial_step(field, sg(t0), sg(y0), sg(f0), args, rtol, atol, primal))
    expand = (slice(None),) + (None,) * y0.ndim  # a sample axis in front of the state's shape
    # Samples at t0 need no step; written so that their derivative in time is f(t0, y0).
    at_start = ts <= t0
    out = jnp.where(at_start[expand], y0[None] + (ts - t0)[expand] * f0[None], unreached)
    idx0 = jnp.sum(at_start).astype(jnp.int32)

    def body(state):
        t, y, f, h, idx, n_steps, status, done, out = state
        last = sg(t + h) >= t1 - 1e-12 * jnp.abs(t1)
        h = sg(jnp.where(last, t1 - t, h))
        y1, err, dense, f1 = step(t, y, f, h)
        yp, y1p = primal(sg(y)), primal(sg(y1))
        scale = atol + rtol * jnp.maximum(jnp.abs(yp), jnp.abs(y1p))
        e = sg(_rms(primal(err) / scale))
        finite = jnp.isfinite(e)
        if check_state:
            finite = finite & jnp.all(jnp.isfinite(y1p))
        accept = finite & (e <= 1.0)
        factor = SAFETY * jnp.where(e > 0, e, 1e-10) ** (-1.0 / error_order)
        factor = jnp.where(finite, jnp.clip(factor, FACTOR_MIN, factor_max), FACTOR_MIN)
        factor = jnp.where(accept, factor, jnp.minimum(factor, 1.0))
        t_new = jnp.where(last, t1, t + h)

        def save_cond(s):
            i, _ = s
            return accept & (i < n_ts) & (sg(ts[jnp.minimum(i, n_ts - 1)]) <= t_new)

        def save_body(s):
            i, o = s
            extra = (i,) if indexed_samples else ()
            value = interpolate((ts[i] - t) / h, y, y1, h, dense, *extra)
            # An unsigned index: no normalisation of negative indices around the update (with
            # it, XLA rewrites the whole output at every sample: a tenth of the cascade's solve).
            start = (i.astype(jnp.uint32),) + (jnp.uint32(0),) * y.ndim
            return i + 1, jax.lax.dynamic_update_slice(o, value[None], start)

        if n_ts:
            idx, out = jax.lax.while_loop(save_cond, save_body, (idx, out))
        h_next = h * factor
        underflow = ~accept & (sg(t + h_next) <= t)
        status = jnp.where(underflow, STATUS_SOLVER_FAILED, status)
        t = jnp.where(accept, t_new, t)
        y = jnp.where(accept, y1, y)
        f = jnp.where(accept, f1, f)
        if terminate is not None:
            done = accept & sg(terminate(t, y, args))
        return t, y, f, h_next, idx, n_steps + 1, status, done, out

    def cond(state):
        t, n_steps, status, done = state[0], state[5], state[6], state[7]
        return (t < t1) & (n_steps < max_steps) & (status == STATUS_OK) & ~done

    init = (
        t0,
        y0,
        f0,
        h_init,
        idx0,
        jnp.asarray(0),
        jnp.asarray(STATUS_OK),
        jnp.asarray(False),
        out,
    )
    t, y, _, _, _, _, status, done, out = jax.lax.while_loop(cond, body, init)
    status = jnp.where((status == STATUS_OK) & (t < t1) & ~done, STATUS_MAX_STEPS, status)
    return out, y, t, status, done


def tsit5_solve(
    field: Callable[[Any, Any, Any], Any],
    t0: Any,
    t1: Any,
    y0: Any,
    ts: Any,
    args: Any,
    *,
    rtol: float,
    atol: float,
    max_steps: int,
    unreached: float = 0.0,
    primal: Callable[[Any], Any] = _identity,
):
    """Integrate ``y' = field(t, y, args)`` from `t0` to `t1`.

    `ts` must be sorted and within [t0, t1]. Returns ``(ys, y1, status)``: the states at `ts`
    (shape ``(len(ts), *y0.shape)``), the state at `t1`, and a status code of `fimkit.models.base`.
    Samples a failed solve never reaches hold `unreached` (NaN lets a caller say where it stopped).
    `primal(y)`: the part of the state the step size control watches (see `adaptive_loop`); with
    a state augmented by its forward sensitivities, the same steps as differentiating the solve of
    the primal state by forward-mode AD, in one array instead of a primal and a tangent.
    """
    R = jnp.asarray(_R)

    def step(t, y, f0, h):
        ks = [f0]
        for i in range(1, 7):
            yi = y + h * sum(a * k for a, k in zip(_A[i], ks, strict=False))
            ks.append(field(t + _C[i] * h, yi, args))
        y1 = y + h * sum(b * k for b, k in zip(_B[:6], ks[:6], strict=True))
        err = h * sum(e * k for e, k in zip(_E, ks, strict=True))
        return y1, err, tuple(ks), ks[6]  # the stages as they are: no stacked copy per step

    def interpolate(theta, y, y1, h, ks):
        weights = R @ (theta ** jnp.arange(1, 5, dtype=y.dtype))
        return y + h * sum(weights[i] * k for i, k in enumerate(ks))

    out, y, _, status, _ = adaptive_loop(
        step,
        interpolate,
        field,
        t0,
        t1,
        y0,
        ts,
        args,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        error_order=ERROR_ORDER,
        unreached=unreached,
        primal=primal,
    )
    return out, y, status


__all__ = ["adaptive_loop", "tsit5_solve"]
