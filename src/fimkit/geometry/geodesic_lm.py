"""Geodesic-accelerated Levenberg–Marquardt for least-squares fits of sloppy models.

Transtrum and Sethna, "Improvements to the Levenberg–Marquardt algorithm for nonlinear least-squares
minimization" (arXiv:1201.5885, 2012). A Levenberg–Marquardt step is the first-order (velocity) term
of a geodesic on the model manifold: δv = −(JᵀJ + λD)⁻¹ Jᵀr. Adding the second-order term, the
geodesic acceleration δa = −(JᵀJ + λD)⁻¹ Jᵀ r_vv with r_vv the second directional derivative of the
residuals along δv, lets the step follow the curved, narrow valleys of sloppy models instead of
creeping along them. The step is δ = δv + ½ δa, taken only when ‖δa‖ ≤ α ‖δv‖ / 2 (the expansion is
trustworthy). Damping follows the paper's "delayed gratification": λ up by 2 on a rejected step, down
by 3 on an accepted one; D is the largest diagonal of JᵀJ seen so far (Marquardt's scaling).

r_vv is exact: two nested forward-mode jvps of the predictions (through the ODE solver for ODE
models), one extra forward pass per iteration.

`levenberg_marquardt` works on any residual function; `fit_geodesic_lm` fits a fimkit model to data
(Gaussian noise with known σ) and returns the same `FitResult` as `fit`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import FitError, describe

# Transtrum & Sethna's recommended acceptance bound on the acceleration, 2‖δa‖/‖δv‖ ≤ α.
DEFAULT_ALPHA = 0.75
_LAMBDA_UP, _LAMBDA_DOWN, _LAMBDA_MAX = 2.0, 3.0, 1e16


@dataclass(frozen=True)
class LeastSquaresResult:
    """The end of a Levenberg–Marquardt run.

    **Fields:** `x` (the solution), `cost` (½ Σ r²), `success`, `message`, `n_iterations` (trial
    steps, accepted or not), `n_accepted`, `n_residuals`, `n_jacobians`, `n_avv` (second directional
    derivatives), `geodesic` (whether the acceleration was used), `history` (the cost after each
    accepted step, starting with the initial cost).
    """

    x: np.ndarray
    cost: float
    success: bool
    message: str
    n_iterations: int
    n_accepted: int
    n_residuals: int
    n_jacobians: int
    n_avv: int
    geodesic: bool
    history: tuple[float, ...]


def levenberg_marquardt(
    residuals: Callable[[np.ndarray], np.ndarray],
    jacobian: Callable[[np.ndarray], np.ndarray],
    x0: Any,
    *,
    avv: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    max_iter: int = 1000,
    xtol: float = 1e-10,
    ftol: float = 1e-12,
    gtol: float = 1e-8,
    damping: float = 1e-3,
    alpha: float = DEFAULT_ALPHA,
) -> LeastSquaresResult:
    """Minimise ½‖r(x)‖² by Levenberg–Marquardt, geodesic-accelerated when `avv` is given.

    **Arguments:**
    - `residuals`: ``r(x)`` → (m,) array; a non-finite value rejects the trial step.
    - `jacobian`: ``J(x)`` → (m, n) array.
    - `x0`: the start, (n,).
    - `avv`: ``avv(x, v)`` → (m,), the second directional derivative ∂²r/∂x²[v, v]; None for
      plain Levenberg–Marquardt with the same damping strategy.
    - `max_iter`: the most trial steps.
    - `xtol`, `ftol`, `gtol`: stop when a step is below xtol·(‖x‖ + xtol), when the relative
      reduction of the cost is below ftol, or when ‖Jᵀr‖∞ is below gtol.
    - `damping`: the initial λ (relative to the scaling D).
    - `alpha`: the acceptance bound 2‖δa‖/‖δv‖ ≤ alpha on the acceleration.

    **Returns:** a `LeastSquaresResult`.
    """
    x = np.array(x0, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise FitError(f"The start 'x0' must be finite. Got {x.tolist()}.")
    for arg, value in (
        ("xtol", xtol),
        ("ftol", ftol),
        ("gtol", gtol),
        ("damping", damping),
        ("alpha", alpha),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise FitError(
                f"The '{arg}' argument of levenberg_marquardt must be a number > 0. Got {describe(value)}."
            )
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise FitError(
            f"The 'max_iter' argument of levenberg_marquardt must be an integer >= 1. Got {describe(max_iter)}."
        )
    r = np.asarray(residuals(x), dtype=np.float64)
    if not np.all(np.isfinite(r)):
        raise FitError(f"The residuals are not finite at the start x0={x.tolist()}.")
    n_res, n_jac, n_avv = 1, 1, 0
    J = np.asarray(jacobian(x), dtype=np.float64)
    cost = 0.5 * float(r @ r)
    history = [cost]
    scaling = np.maximum(np.sum(J * J, axis=0), 1e-300)
    lam = float(damping)
    message, success = "the maximum number of iterations was reached", False
    n_iter = n_accepted = 0
    while n_iter < max_iter:
        grad = J.T @ r
        if np.max(np.abs(grad)) <= gtol:
            message, success = f"gradient below gtol ({np.max(np.abs(grad)):.3g})", True
            break
        n_iter += 1
        A = J.T @ J + lam * np.diag(scaling)
        try:
            chol = np.linalg.cholesky(A)
        except np.linalg.LinAlgError:
            lam *= _LAMBDA_UP
            continue

        def solve(b, chol=chol):
            return np.linalg.solve(chol.T, np.linalg.solve(chol, b))

        v = -solve(grad)
        step = v
        if avv is not None:
            rvv = np.asarray(avv(x, v), dtype=np.float64)
            n_avv += 1
            a = -solve(J.T @ rvv) if np.all(np.isfinite(rvv)) else np.full_like(v, np.inf)
            dnorm = np.sqrt(scaling)
            ratio = 2.0 * np.linalg.norm(dnorm * a) / max(np.linalg.norm(dnorm * v), 1e-300)
            if not np.isfinite(ratio) or ratio > alpha:
                lam *= _LAMBDA_UP
                if lam > _LAMBDA_MAX:
                    message = "the damping overflowed: no acceptable step (the problem may be flat)"
                    break
                continue
            step = v + 0.5 * a
        x_new = x + step
        r_new = np.asarray(residuals(x_new), dtype=np.float64)
        n_res += 1
        cost_new = 0.5 * float(r_new @ r_new) if np.all(np.isfinite(r_new)) else np.inf
        if cost_new < cost:
            reduction = cost - cost_new
            small_step = np.linalg.norm(step) <= xtol * (np.linalg.norm(x) + xtol)
            x, r, cost = x_new, r_new, cost_new
            history.append(cost)
            n_accepted += 1
            lam = max(lam / _LAMBDA_DOWN, 1e-300)
            J = np.asarray(jacobian(x), dtype=np.float64)
            n_jac += 1
            scaling = np.maximum(scaling, np.sum(J * J, axis=0))
            if reduction <= ftol * cost_new or cost == 0.0:
                message, success = "relative reduction of the cost below ftol", True
                break
            if small_step:
                message, success = "step below xtol", True
                break
        else:
            lam *= _LAMBDA_UP
            if lam > _LAMBDA_MAX:
                message = "the damping overflowed: no step reduces the cost"
                # At an exact minimum no step can reduce the cost: accept when the gradient is small.
                success = bool(np.max(np.abs(J.T @ r)) <= 1e3 * gtol)
                break
    return LeastSquaresResult(
        x,
        cost,
        success,
        message,
        n_iter,
        n_accepted,
        n_res,
        n_jac,
        n_avv,
        avv is not None,
        tuple(history),
    )


# -- fimkit models ----------------------------------------------------------------------------------
def _avv_program(setup, scale: str):
    """u ↦ second directional derivative of the flattened predictions along v (coordinates u)."""
    to_theta = jnp.exp if scale == "log" else (lambda u: u)

    def run(u, v, times, dose_values):
        def f(z):
            return setup.outputs_flat(to_theta(z), times, dose_values)[0]

        def df(z):
            return jax.jvp(f, (z,), (v,))[1]

        return jax.jvp(df, (u,), (v,))[1]

    return run


def least_squares_functions(lik: Any, scale: str):
    """(residuals(u), jacobian(u), avv(u, v)) of a least-squares `Likelihood` in coordinates u."""
    from ..prediction import _predict_program, _sensitivity_program

    setup = lik.setup
    to_theta = (lambda u: np.exp(u)) if scale == "log" else (lambda u: np.asarray(u))
    pred = setup.compiled("predict", _predict_program)
    sens = setup.compiled("sensitivities", _sensitivity_program)
    second = setup.compiled(f"geometry-avv-{scale}", lambda s: _avv_program(s, scale))
    args = (setup.times(), setup.dose_values)
    outputs = [setup.observation_outputs[k] for k in lik.index]
    sigma = np.sqrt(np.asarray(setup.noise.variance(np.zeros(len(lik.index)), {}, outputs)))
    w = lik.mask / sigma

    def residuals(u):
        th = to_theta(u)
        if not np.all(np.isfinite(th)):
            return np.full(w.size, np.nan)
        f, status = pred(th, *args)
        if np.any(np.asarray(status) != 0):
            return np.full(w.size, np.nan)
        return w * (lik.y - np.asarray(f)[lik.index])

    def jacobian(u):
        th = to_theta(u)
        S, _, status = sens(th, *args)
        setup.check_status(status, th)
        S = np.asarray(S)[lik.index]
        if scale == "log":
            S = S * th
        return -(w[:, None] * S)

    def avv(u, v):
        fvv = np.asarray(second(jnp.asarray(u), jnp.asarray(v), *args))
        return -(w * fvv[lik.index])

    return residuals, jacobian, avv


def fit_geodesic_lm(
    model: Any,
    data: Any,
    *,
    noise: Any,
    theta0: Any,
    scale: str = "log",
    acceleration: bool = True,
    max_iter: int = 1000,
    xtol: float = 1e-10,
    ftol: float = 1e-12,
    gtol: float = 1e-8,
    alpha: float = DEFAULT_ALPHA,
):
    """Least-squares fit by geodesic-accelerated Levenberg–Marquardt.

    **Arguments:** as `fit` for `model`, `data`, `noise` (Gaussian with a known σ: a least-squares
    problem), `theta0` and `scale`; `acceleration=False` runs plain Levenberg–Marquardt with the
    same damping; `max_iter`, `xtol`, `ftol`, `gtol`, `alpha` as in `levenberg_marquardt`.

    **Returns:** a `FitResult` whose `n_iterations` counts trial steps; a run that did not converge
    says so in `success` and `message` and emits a `ConvergenceWarning`.
    """
    from ..inference.fit import ConvergenceWarning, FitResult, _least_squares_problem
    from ..information.fim import _check_scale
    from ..likelihood import Likelihood

    scale = _check_scale(scale)
    lik = Likelihood.build(model, data, noise)
    if not _least_squares_problem(lik):
        raise FitError(
            "fit_geodesic_lm needs a least-squares problem: Gaussian noise with a known σ. Got "
            f"noise {lik.setup.noise}; use fimkit.fit for other noise models."
        )
    th0 = lik.setup.theta(theta0, positive=(scale == "log"))
    residuals, jacobian, avv = least_squares_functions(lik, scale)
    u0 = np.log(th0) if scale == "log" else th0
    res = levenberg_marquardt(
        residuals,
        jacobian,
        u0,
        avv=avv if acceleration else None,
        max_iter=max_iter,
        xtol=xtol,
        ftol=ftol,
        gtol=gtol,
        alpha=alpha,
    )
    th = np.exp(res.x) if scale == "log" else res.x
    value, _, _ = lik.evaluate(th)
    result = FitResult(
        lik.names,
        th,
        value,
        res.success,
        f"{'geodesic ' if acceleration else ''}Levenberg–Marquardt: {res.message}",
        res.n_iterations,
        scale,
        model,
        data,
        lik.setup.noise,
        ((value, res.success),),
    )
    if not res.success:
        warnings.warn(
            f"The fit did not converge: {result.message}. Try another theta0 or more max_iter.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return result


__all__ = [
    "LeastSquaresResult",
    "fit_geodesic_lm",
    "least_squares_functions",
    "levenberg_marquardt",
]
