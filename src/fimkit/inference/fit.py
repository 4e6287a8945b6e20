"""Maximum-likelihood fitting with exact derivatives, multistart, and simulation studies.

Plain Gaussian noise with a known σ is a least-squares problem: Levenberg–Marquardt (or a
trust-region reflective method under bounds) on the weighted residuals with the exact Jacobian.
Every other noise model, and σ estimated, goes to a trust-region Newton method on −ℓ with the exact
gradient and Hessian. Parameters are optimised on the log scale by default (`scale="log"`), which
keeps them positive and makes the problem better conditioned.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import Data
from ..errors import (
    FimkitError,
    FimkitWarning,
    FitError,
    IdentifiabilityWarning,
    SingularFIMError,
    describe,
)
from ..information.fim import FisherInformation, _check_scale, fisher_information, format_direction
from ..information.observed import observed_information, sandwich_covariance
from ..likelihood import Likelihood
from ..models import is_petab_problem
from ..noise import Gaussian
from ..prediction import _sensitivity_program
from ..report.tables import Table, fmt
from .intervals import Intervals, wald_intervals

if TYPE_CHECKING:
    from ..models.petab import PetabFit


class ConvergenceWarning(FimkitWarning):
    """An optimiser stopped without meeting its convergence criterion."""


def _bounds(names, bounds, scale) -> tuple[np.ndarray, np.ndarray]:
    lo = np.full(len(names), -np.inf)
    hi = np.full(len(names), np.inf)
    if bounds is None:
        return lo, hi
    if not isinstance(bounds, Mapping):
        raise FitError(
            "The 'bounds' argument must be a dict {name: (lower, upper)}. "
            f"Got {describe(bounds)}."
        )
    for n, b in bounds.items():
        if n not in names:
            raise FitError(
                f"The 'bounds' argument names unknown parameter {n!r}; the parameters are {list(names)}."
            )
        try:
            low, high = (float(x) for x in b)
        except (TypeError, ValueError) as exc:
            raise FitError(
                f"The bounds of {n!r} must be a pair (lower, upper). Got {describe(b)}."
            ) from exc
        if not low < high:
            raise FitError(f"The bounds of {n!r} must have lower < upper. Got ({low}, {high}).")
        if scale == "log":
            if low <= 0:
                raise FitError(
                    f"The bounds of {n!r} must be positive on the log scale (scale='log'). Got ({low}, {high})."
                )
            low, high = np.log(low), np.log(high)
        j = names.index(n)
        lo[j], hi[j] = low, high
    return lo, hi


@dataclass(frozen=True, eq=False)
class FitResult:
    """The maximum-likelihood estimate and how the optimiser got there.

    **Fields:** `names`, `theta` (linear scale), `params` (dict), `loglike`, `success`, `message`,
    `n_iterations`, `scale` (of the optimisation and of the covariances), `starts` (log-likelihood and
    success of each start), `bounds` (as given, linear scale). **Methods:** `cov(kind)`, `fim(kind)`, `conf_int(alpha, kind)`,
    `summary()`.
    """

    names: tuple[str, ...]
    theta: np.ndarray
    loglike: float
    success: bool
    message: str
    n_iterations: int
    scale: str
    model: Any = field(repr=False)
    data: Data = field(repr=False)
    noise: Any = field(repr=False)
    starts: tuple[tuple[float, bool], ...] = ()
    bounds: Mapping[str, tuple[float, float]] | None = None

    @property
    def params(self) -> dict[str, float]:
        return dict(zip(self.names, self.theta.tolist(), strict=True))

    def fim(self, kind: str = "expected") -> FisherInformation:
        """The information at the estimate: ``"expected"`` (of the data's design) or ``"observed"``."""
        if kind == "expected":
            return fisher_information(
                self.model, self.theta, self.data.design, noise=self.noise, scale=self.scale
            )
        if kind == "observed":
            return observed_information(
                self.model, self.theta, self.data, noise=self.noise, scale=self.scale
            )
        raise FitError(
            f"The 'kind' argument must be 'expected' or 'observed'. Got {describe(kind)}."
        )

    def cov(self, kind: str = "expected") -> np.ndarray:
        """Asymptotic covariance on `scale`: inverse expected or observed information, or the
        robust sandwich (``kind="sandwich"``)."""
        if kind == "sandwich":
            return sandwich_covariance(
                self.model, self.theta, self.data, noise=self.noise, scale=self.scale
            )
        return self.fim(kind).cov()

    def conf_int(self, alpha: float = 0.05, kind: str = "expected") -> Intervals:
        """Wald intervals from the chosen covariance (mapped back from the log scale)."""
        if kind == "sandwich":
            F = self.fim("expected")
            cov = self.cov("sandwich")
            F = FisherInformation(
                np.linalg.inv(cov), F.names, F.theta, F.scale, {"method": "sandwich"}
            )
            return wald_intervals(F, alpha=alpha)
        return wald_intervals(self.fim(kind), alpha=alpha)

    def summary(self, alpha: float = 0.05) -> Table:
        notes = [
            f"log-likelihood {self.loglike:.6g}; converged: {self.success} ({self.message}); "
            f"{self.n_iterations} iterations; {len(self.starts)} start(s)"
        ]
        try:
            ci = self.conf_int(alpha)
            rows = tuple(
                (n, fmt(self.theta[j]), fmt(ci.se[j]), fmt(ci.lower[j]), fmt(ci.upper[j]))
                for j, n in enumerate(self.names)
            )
        except SingularFIMError as exc:
            notes.append(str(exc))
            rows = tuple((n, fmt(self.theta[j]), "-", "-", "-") for j, n in enumerate(self.names))
        se = "SE(log)" if self.scale == "log" else "SE"
        level = f"{100 * (1 - alpha):g}%"
        return Table(
            "Maximum-likelihood fit",
            ("parameter", "estimate", se, f"{level} lower", f"{level} upper"),
            rows,
            tuple(notes),
        )


def _least_squares_problem(lik: Likelihood) -> bool:
    noise = lik.setup.noise
    return type(noise) is Gaussian and not noise.param_names


def _one_fit(lik, u0, lo, hi, scale, max_iter, method="trust-region"):
    to_theta = (lambda u: np.exp(u)) if scale == "log" else (lambda u: np.asarray(u))
    setup = lik.setup
    from scipy import optimize

    if method == "geodesic-lm":
        from ..geometry.geodesic_lm import least_squares_functions, levenberg_marquardt

        residuals, jacobian, avv = least_squares_functions(lik, scale)
        tol = max(1e-10, float(setup.model._solver_info().get("rtol", 0.0)))
        res = levenberg_marquardt(
            residuals, jacobian, u0, avv=avv, max_iter=max_iter * 5, xtol=tol, ftol=tol, gtol=1e-8
        )
        th = to_theta(res.x)
        value, _, _ = lik.evaluate(th)
        return th, value, bool(res.success), str(res.message), int(res.n_iterations)

    has_bounds = bool(np.isfinite(lo).any() or np.isfinite(hi).any())
    if _least_squares_problem(lik):
        sens = setup.compiled("sensitivities", _sensitivity_program)
        args = (setup.times(), setup.dose_values)
        sigma = np.sqrt(
            np.asarray(
                setup.noise.variance(
                    np.zeros(len(lik.index)), {}, [setup.observation_outputs[k] for k in lik.index]
                )
            )
        )
        w = lik.mask / sigma
        # An ODE solution is smooth in θ only to about the solver's rtol: asking the optimiser
        # for relative reductions below that makes it wander in solver noise until max_nfev.
        tol = max(1e-10, float(setup.model._solver_info().get("rtol", 0.0)))

        # Trust-region least squares accepts almost every trial step, and then asks for the
        # Jacobian at the point it just evaluated: one forward pass gives both.
        last: dict[str, Any] = {}

        def evaluate(u):
            key = np.asarray(u).tobytes()
            if last.get("key") != key:
                th = to_theta(u)
                S, f, status = sens(th, *args)
                status = np.asarray(status)
                last.update(key=key, th=th, S=S, f=f, status=status, ok=bool(np.all(status == 0)))
            return last

        def residuals(u):
            e = evaluate(u)
            if not e["ok"] or not np.all(np.isfinite(e["th"])):
                # A trial step the model cannot simulate: a large residual makes the optimiser
                # shrink its step instead of aborting the fit.
                return np.full(w.size, 1e10)
            return w * (lik.y - np.asarray(e["f"])[lik.index])

        def jac(u):
            e = evaluate(u)
            if not e["ok"]:
                setup.check_status(e["status"], e["th"])
            S = np.asarray(e["S"])[lik.index]
            if scale == "log":
                S = S * e["th"]
            return -(w[:, None] * S)

        res = optimize.least_squares(
            residuals,
            u0,
            jac=jac,
            method="trf" if has_bounds else "lm",
            bounds=(lo, hi) if has_bounds else (-np.inf, np.inf),
            xtol=tol,
            ftol=tol,
            gtol=1e-8,
            max_nfev=max_iter * 10,
        )
        th = to_theta(res.x)
        value, _, _ = lik.evaluate(th)
        return th, value, bool(res.success), str(res.message), int(res.nfev)

    def objective(u):
        th = to_theta(u)
        value, G, H = lik.evaluate(th)
        g = G.sum(axis=0)
        if scale == "log":
            H = H * np.outer(th, th) + np.diag(th * g)
            g = g * th
        return -value, -g, -H

    cache: dict[bytes, Any] = {}

    def cached(u):
        k = np.asarray(u).tobytes()
        if k not in cache:
            cache.clear()
            cache[k] = objective(u)
        return cache[k]

    if has_bounds:
        res = optimize.minimize(
            lambda u: cached(u)[0],
            u0,
            jac=lambda u: cached(u)[1],
            hess=lambda u: cached(u)[2],
            method="trust-constr",
            bounds=optimize.Bounds(lo, hi),
            options={"maxiter": max_iter * 5, "gtol": 1e-10, "xtol": 1e-12},
        )
    else:
        res = optimize.minimize(
            lambda u: cached(u)[0],
            u0,
            jac=lambda u: cached(u)[1],
            hess=lambda u: cached(u)[2],
            method="trust-exact",
            options={"maxiter": max_iter, "gtol": 1e-8},
        )
    th = to_theta(res.x)
    success, message = bool(res.success), str(res.message)
    if not success:
        # trust-exact stops with "a bad approximation" when it cannot improve on the optimum
        # itself: accept only when the gradient there is negligible, and say so.
        _, g, _ = cached(res.x)
        free = (res.x > lo + 1e-10) & (res.x < hi - 1e-10)
        gnorm = float(np.max(np.abs(g[free]))) if free.any() else 0.0
        if gnorm < 1e-6 * (1.0 + abs(float(res.fun))):
            success = True
            message = f"gradient {gnorm:.2g} below tolerance (optimiser: {message})"
    return th, -float(res.fun), success, message, int(getattr(res, "nit", 0))


def fit(
    model: Any,
    data: Data | None = None,
    *,
    noise: Any = None,
    theta0: Any = None,
    scale: str | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    multistart: int = 0,
    key: int = 0,
    max_iter: int = 200,
    method: str | None = None,
) -> FitResult | PetabFit:
    """Maximum-likelihood estimate of all parameters (model and noise) from `data`.

    A `PetabProblem` (from `load_petab`) is fitted by its own method, `PetabProblem.fit` (Fisher
    scoring within the parameter table's bounds, on the PEtab scales), and the result is a
    `PetabFit`: ``fit(problem, theta0=x0, bounds=..., multistart=k, key=seed, max_iter=...)`` is
    ``problem.fit(x0, bounds=..., n_starts=k + 1, seed=seed, max_iter=...)``. `data` may be a
    PEtab measurement table (then ``problem.with_measurements(data)`` is fitted); `noise`,
    `scale` and `method` come from the problem and must not be given.

    **Arguments:**
    - `model`, `data` (a `Data`), `noise`: as elsewhere; noise parameters named in the noise model
      are estimated with the model's.
    - `theta0`: the start (dict or vector over ``parameter_names(model, noise)``); required,
      except for a `PetabProblem` (default: its nominal values).
    - `scale`: ``"log"`` (default: optimise log θ, parameters stay positive) or ``"lin"``.
    - `bounds`: ``{name: (lower, upper)}`` on the linear scale.
    - `multistart`: number of extra starts, drawn by Latin hypercube sampling within `bounds`
      (which must then bound every parameter); the best log-likelihood wins.
    - `key`: seed of the Latin hypercube.
    - `method`: ``"trust-region"`` (default: Levenberg–Marquardt / trust-region reflective least
      squares, or trust-region Newton on −ℓ) or ``"geodesic-lm"`` (geodesic-accelerated
      Levenberg–Marquardt, Transtrum & Sethna, for sloppy least-squares problems: Gaussian noise
      with known σ, no bounds on the optimisation itself).

    **Returns:** a `FitResult`. A fit that does not converge says so in `success` and `message`
    and emits a `ConvergenceWarning`; it never reports success silently.
    """
    if is_petab_problem(model):
        return _fit_petab(
            model, data, noise, theta0, scale, bounds, multistart, key, max_iter, method
        )
    missing = [a for a, v in (("data", data), ("noise", noise), ("theta0", theta0)) if v is None]
    if missing:
        raise FitError(
            f"fit(model, data, noise=..., theta0=...) is missing {missing}. Got model "
            f"{describe(model)}."
        )
    scale = _check_scale("log" if scale is None else scale)
    method = "trust-region" if method is None else method
    lik = Likelihood.build(model, data, noise)
    names = lik.names
    th0 = lik.setup.theta(theta0, positive=(scale == "log"))
    lo, hi = _bounds(names, bounds, scale)
    u0 = np.log(th0) if scale == "log" else th0
    if np.any(u0 < lo) or np.any(u0 > hi):
        outside = [n for j, n in enumerate(names) if not lo[j] <= u0[j] <= hi[j]]
        raise FitError(f"The start 'theta0' lies outside the bounds for {outside}.")
    if method not in ("trust-region", "geodesic-lm"):
        raise FitError(
            f"The 'method' argument must be 'trust-region' or 'geodesic-lm'. Got {describe(method)}."
        )
    if method == "geodesic-lm":
        if not _least_squares_problem(lik):
            raise FitError(
                "method='geodesic-lm' needs a least-squares problem: Gaussian noise with a known σ. "
                f"Got noise {lik.setup.noise}."
            )
        if bounds is not None and not multistart:
            raise FitError(
                "method='geodesic-lm' does not take bounds (they are used only to draw multistart "
                f"starts). Got bounds={bounds!r} with multistart=0."
            )
    starts = [u0]
    if isinstance(multistart, bool) or not isinstance(multistart, int) or multistart < 0:
        raise FitError(
            f"The 'multistart' argument must be an integer >= 0. Got {describe(multistart)}."
        )
    if multistart:
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            unbounded = [
                n for j, n in enumerate(names) if not (np.isfinite(lo[j]) and np.isfinite(hi[j]))
            ]
            raise FitError(
                f"multistart needs finite bounds on every parameter; missing for {unbounded}."
            )
        from scipy.stats import qmc

        sample = qmc.LatinHypercube(d=len(names), seed=key).random(multistart)
        starts += list(qmc.scale(sample, lo, hi))
    results = []
    for u in starts:
        try:
            results.append(
                _one_fit(lik, np.asarray(u, dtype=float), lo, hi, scale, max_iter, method)
            )
        except (FimkitError, np.linalg.LinAlgError) as exc:
            results.append((np.exp(u) if scale == "log" else u, -np.inf, False, str(exc), 0))
    for i, r in enumerate(results):
        if not np.isfinite(r[1]) and r[2]:
            # The optimiser stopped "successfully" where the likelihood cannot be evaluated: it
            # ran off along a direction the data do not determine.
            at = dict(zip(names, np.asarray(r[0], dtype=float).tolist(), strict=True))
            results[i] = (
                r[0],
                -np.inf,
                False,
                f"the optimiser ended at {at}, where the log-likelihood is not finite (it moved "
                "along a direction the data do not determine; see fimkit.identifiability, fix a "
                "parameter, or give bounds)",
                r[4],
            )
    finite = [r for r in results if np.isfinite(r[1])]
    if not finite:
        raise FitError(f"Every start failed; the first: {results[0][3]}")
    best = max(finite, key=lambda r: r[1])
    th, value, success, message, n_iter = best
    result = FitResult(
        names,
        np.asarray(th),
        value,
        success,
        message,
        n_iter,
        scale,
        model,
        data,
        lik.setup.noise,
        tuple((float(r[1]), bool(r[2])) for r in results),
        None if bounds is None else {n: (float(a), float(b)) for n, (a, b) in bounds.items()},
    )
    if not success:
        warnings.warn(
            f"The fit did not converge: {message}. Try another theta0, multistart, or bounds.",
            ConvergenceWarning,
            stacklevel=2,
        )
    _check_curvature(result)
    return result


def _fit_petab(problem, data, noise, theta0, scale, bounds, multistart, key, max_iter, method):
    given = [
        a for a, v in (("noise", noise), ("scale", scale), ("method", method)) if v is not None
    ]
    if given:
        raise FitError(
            f"fit(problem) of a PEtab problem takes its noise model and parameter scales from the "
            f"PEtab tables and fits by Fisher scoring; {given} must not be given. Got "
            + ", ".join(
                f"{a}={v!r}"
                for a, v in (("noise", noise), ("scale", scale), ("method", method))
                if v is not None
            )
            + "."
        )
    if isinstance(multistart, bool) or not isinstance(multistart, int) or multistart < 0:
        raise FitError(
            f"The 'multistart' argument must be an integer >= 0. Got {describe(multistart)}."
        )
    if data is not None:
        problem = problem.with_measurements(data)
    return problem.fit(theta0, bounds=bounds, n_starts=multistart + 1, seed=key, max_iter=max_iter)


def _check_curvature(result: FitResult) -> None:
    try:
        J = result.fim("observed")
    except Exception:  # a failed solve at the optimum is reported by the caller's next call
        return
    w, v = np.linalg.eigh(J.matrix)
    if w[0] <= 1e-12 * max(abs(w[-1]), 1e-300):
        warnings.warn(
            "The log-likelihood is not strictly concave at the returned point (smallest eigenvalue of "
            f"the observed information {w[0]:.3g}): it is flat or curved upward along "
            f"{format_direction(v[:, 0], J.names)} ({J.scale} scale). The estimate is not a strict "
            "maximum along that direction.",
            IdentifiabilityWarning,
            stacklevel=3,
        )


__all__ = ["ConvergenceWarning", "FitResult", "fit"]
