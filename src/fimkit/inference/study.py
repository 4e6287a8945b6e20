"""Simulation studies, and planned versus achieved precision.

`simulate_study` checks whether the asymptotic theory holds for a design: it simulates data sets,
refits each, and compares the spread of the estimates with the Cramér–Rao bound, their mean with
the truth, and the coverage of the Wald intervals with the nominal level.
`precision_report` compares the precision an experiment was planned to give (expected information
of the design) with what its data gave (observed information at the fit).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import jax
import numpy as np

from ..data import Data
from ..errors import FimkitError, FimkitWarning, describe
from ..information.fim import FisherInformation, fisher_information
from ..prediction import Setup, _predict_program
from ..report.tables import Table, fmt
from .fit import FitResult, fit


@dataclass(frozen=True)
class StudyResult:
    """Replicate estimates against the asymptotic theory, on `scale` (log θ or θ)."""

    names: tuple[str, ...]
    theta: np.ndarray
    scale: str
    estimates: np.ndarray  # (n_ok, p), linear scale
    n_failed: int
    empirical_cov: np.ndarray
    crlb: np.ndarray
    bias: np.ndarray
    coverage: np.ndarray
    alpha: float

    @property
    def variance_ratio(self) -> np.ndarray:
        """Empirical variance over the Cramér–Rao bound, per parameter (1 = efficient)."""
        return np.diag(self.empirical_cov) / np.diag(self.crlb)

    def summary(self) -> Table:
        rows = tuple(
            (
                n,
                fmt(self.bias[j]),
                fmt(np.sqrt(self.empirical_cov[j, j])),
                fmt(np.sqrt(self.crlb[j, j])),
                fmt(self.variance_ratio[j], 3),
                fmt(self.coverage[j], 3),
            )
            for j, n in enumerate(self.names)
        )
        return Table(
            f"Simulation study ({self.estimates.shape[0]} fits, {self.n_failed} failed; {self.scale} scale)",
            (
                "parameter",
                "bias",
                "empirical SD",
                "CRLB SD",
                "variance ratio",
                f"coverage ({1 - self.alpha:g})",
            ),
            rows,
        )


def simulate_data(model: Any, theta: Any, design: Any, *, noise: Any, key: Any) -> Data:
    """One simulated data set: every subject of every group, from `noise` around the predictions."""
    setup = Setup.build(model, design, noise)
    th = setup.theta(theta)
    f, status = setup.compiled("predict", _predict_program)(th, setup.times(), setup.dose_values)
    setup.check_status(status, th)
    key = jax.random.PRNGKey(key) if isinstance(key, int | np.integer) else key
    p = dict(zip(setup.names, th, strict=True))
    pairs, start = [], 0
    for gi, g in enumerate(setup.groups):
        size = g.times.size * len(setup.output_index[gi])
        fg = np.asarray(f)[start : start + size]
        outs = setup.observation_outputs[start : start + size]
        key, sub = jax.random.split(key)
        draws = [np.asarray(setup.noise.sample(k, fg, p, outs)) for k in jax.random.split(sub, g.n)]
        values = np.stack(draws).reshape(g.n, g.times.size, len(setup.output_index[gi]))
        outputs = setup.output_names(gi)
        from ..design import Group

        pairs.append((Group(g.times, outputs, g.doses, g.n), values))
        start += size
    return Data.from_groups(pairs)


def simulate_study(
    model: Any,
    theta: Any,
    design: Any,
    *,
    noise: Any,
    n_rep: int,
    key: Any = 0,
    scale: str = "log",
    alpha: float = 0.05,
) -> StudyResult:
    """Simulate `n_rep` data sets at `theta`, refit each (from the truth), and compare.

    Reports the empirical covariance of the estimates against the Cramér–Rao bound (inverse
    expected information at the truth), the bias, and the coverage of the Wald intervals (each
    replicate's interval from the expected information at its own estimate).
    """
    if isinstance(n_rep, bool) or not isinstance(n_rep, int) or n_rep < 2:
        raise FimkitError(f"The 'n_rep' argument must be an integer >= 2. Got {describe(n_rep)}.")
    F = fisher_information(model, theta, design, noise=noise, scale=scale)
    names, th = F.names, F.theta
    crlb = F.cov()
    z = NormalDist().inv_cdf(1 - alpha / 2)
    key = jax.random.PRNGKey(key) if isinstance(key, int | np.integer) else key
    estimates, covered, failed = [], [], 0
    for k in jax.random.split(key, n_rep):
        data = simulate_data(model, th, design, noise=noise, key=k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FimkitWarning)
            try:
                res = fit(model, data, noise=noise, theta0=th, scale=scale)
            except FimkitError:
                failed += 1
                continue
        if not res.success:
            failed += 1
            continue
        try:
            se = np.sqrt(np.diag(res.cov("expected")))
        except FimkitError:
            failed += 1
            continue
        u_hat = np.log(res.theta) if scale == "log" else res.theta
        u_true = np.log(th) if scale == "log" else th
        estimates.append(res.theta)
        covered.append(np.abs(u_hat - u_true) <= z * se)
    if len(estimates) < 2:
        raise FimkitError(f"Only {len(estimates)} of {n_rep} replicate fits succeeded.")
    est = np.asarray(estimates)
    u = np.log(est) if scale == "log" else est
    u_true = np.log(th) if scale == "log" else th
    return StudyResult(
        names,
        th,
        scale,
        est,
        failed,
        np.cov(u, rowvar=False),
        crlb,
        u.mean(axis=0) - u_true,
        np.mean(covered, axis=0),
        float(alpha),
    )


@dataclass(frozen=True)
class PrecisionReport:
    """Planned (expected information) versus achieved (observed information) standard errors."""

    names: tuple[str, ...]
    planned_se: np.ndarray
    achieved_se: np.ndarray
    tolerance: float

    @property
    def met(self) -> dict[str, bool]:
        """Whether each parameter reached its planned precision (within `tolerance`)."""
        ok = self.achieved_se <= self.planned_se * (1 + self.tolerance)
        return dict(zip(self.names, ok.tolist(), strict=True))

    def summary(self) -> Table:
        rows = tuple(
            (
                n,
                fmt(self.planned_se[j]),
                fmt(self.achieved_se[j]),
                fmt(self.achieved_se[j] / self.planned_se[j], 3),
                "yes" if self.met[n] else "NO",
            )
            for j, n in enumerate(self.names)
        )
        return Table(
            "Planned versus achieved precision",
            ("parameter", "planned SE", "achieved SE", "ratio", "met"),
            rows,
            (f"met: achieved SE ≤ planned SE × {1 + self.tolerance:g}",),
        )


def precision_report(
    planned: FisherInformation, achieved: FitResult | FisherInformation, *, tolerance: float = 0.1
) -> PrecisionReport:
    """Did the experiment give the precision it was planned for? Per parameter.

    `planned` is the expected information of the design (before the experiment); `achieved` is a
    `FitResult` (its observed information is used) or an observed `FisherInformation`.
    """
    if isinstance(achieved, FitResult):
        achieved = achieved.fim("observed")
    if not isinstance(planned, FisherInformation) or not isinstance(achieved, FisherInformation):
        raise FimkitError(
            "precision_report needs a planned FisherInformation and a FitResult or FisherInformation."
            f" Got {describe(planned)} and {describe(achieved)}."
        )
    if planned.names != achieved.names:
        raise FimkitError(
            f"The planned and achieved informations must be about the same parameters. Got "
            f"{list(planned.names)} and {list(achieved.names)}."
        )
    achieved = achieved.to_scale(planned.scale) if achieved.scale != planned.scale else achieved
    return PrecisionReport(
        planned.names,
        np.sqrt(np.diag(planned.cov())),
        np.sqrt(np.diag(achieved.cov())),
        float(tolerance),
    )


__all__ = ["PrecisionReport", "StudyResult", "precision_report", "simulate_data", "simulate_study"]
