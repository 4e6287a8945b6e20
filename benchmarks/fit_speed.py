"""Fitting speed: fimkit's `fit` against scipy least squares with finite-difference Jacobians.

The kinase cascade of shared/reference/cascade.md with k1 fixed at 1 (the full set of eight rates is
not identifiable), 7 rates fitted on the log scale to noisy simulated data (σ = 0.01, outputs x3 and
x4 at 40 times), from the same 20 Latin-hypercube starts within [0.1, 10] × nominal:

- fimkit: `fk.fit` with those bounds (trust-region reflective least squares with the exact
  Jacobian from forward-mode AD through diffrax, Tsit5, rtol 1e-8), compilation excluded (measured
  separately);
- baseline, written the way users do it by hand: `scipy.optimize.least_squares` (trust-region
  reflective, same bounds and tolerances) with its default 2-point finite-difference Jacobian
  around `scipy.integrate.solve_ivp` (LSODA, rtol 1e-8, atol 1e-10).

The problem is sloppy (k4 drifts towards its lower bound with almost no change in fit), which is
why both use bounds: without them a least-squares method creeps along the valley until max_nfev.

Prints a table and writes JSON to benchmarks/results/fit_speed.json. Run:
``python benchmarks/fit_speed.py [--starts 20]``. The target is a ratio measured in the same run:
fimkit at least 20× faster in total time to the same best optimum.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import optimize
from scipy.integrate import solve_ivp
from scipy.stats import qmc

import fimkit as fk

NOMINAL = np.array([0.5, 2.0, 0.3, 1.5, 0.4, 0.8, 0.2])  # k2 … k8; k1 = 1
NAMES = [f"k{i}" for i in range(2, 9)]
TIMES = np.linspace(0.5, 20, 40)
SIGMA = 0.01


def rhs_np(t, x, k):
    k2, k3, k4, k5, k6, k7, k8 = k
    return [
        1.0 * (1 - x[0]) - k2 * x[0],
        k3 * x[0] * (1 - x[1]) - k4 * x[1],
        k5 * x[1] * (1 - x[2]) - k6 * x[2],
        k7 * x[2] - k8 * x[3],
        0.5 * x[3] - 0.3 * x[4],
        0.2 * x[4] - 0.1 * x[5],
    ]


def model():
    def rhs(t, x, p):
        return rhs_np(t, x, [p[n] for n in NAMES])

    return fk.ODEModel(
        rhs,
        np.zeros(6),
        lambda t, x, p: [x[2], x[3]],
        params=NAMES,
        states=[f"x{i}" for i in range(1, 7)],
        outputs=["y1", "y2"],
        name="cascade_k1_fixed",
    )


def baseline_fit(y, u0, lo, hi):
    def residuals(u):
        sol = solve_ivp(
            rhs_np,
            (0, 20),
            np.zeros(6),
            method="LSODA",
            t_eval=TIMES,
            args=(np.exp(u),),
            rtol=1e-8,
            atol=1e-10,
        )
        if not sol.success or sol.y.shape[1] != TIMES.size:
            return np.full(y.size, 1e10)  # a failed solve: make the optimiser back off
        return ((y - sol.y[2:4].T) / SIGMA).ravel()

    res = optimize.least_squares(residuals, u0, method="trf", bounds=(lo, hi), xtol=1e-8, ftol=1e-8)
    return np.exp(res.x), 0.5 * np.sum(res.fun**2), res.success


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results/fit_speed.json")
    args = parser.parse_args()

    m = model()
    truth = dict(zip(NAMES, NOMINAL, strict=True))
    design = fk.Design(times=TIMES)
    data = fk.simulate_data(m, truth, design, noise=fk.Gaussian(sigma=SIGMA), key=0)
    y = data.values[0][0]
    lo, hi = np.log(NOMINAL * 0.1), np.log(NOMINAL * 10)
    starts = qmc.scale(qmc.LatinHypercube(d=7, seed=1).random(args.starts), lo, hi)

    noise = fk.Gaussian(sigma=SIGMA)
    t0 = time.perf_counter()
    bounds = {n: (0.1 * v, 10 * v) for n, v in truth.items()}
    fk.fit(m, data, noise=noise, theta0=truth, bounds=bounds)  # compiles the programs
    compile_s = time.perf_counter() - t0

    fimkit_results, t0 = [], time.perf_counter()
    for u in starts:
        try:
            r = fk.fit(m, data, noise=noise, theta0=np.exp(u), bounds=bounds)
            fimkit_results.append((-r.loglike, r.success))
        except fk.errors.FimkitError:
            fimkit_results.append((np.inf, False))
    fimkit_s = time.perf_counter() - t0

    base_results, t0 = [], time.perf_counter()
    for u in starts:
        _, cost, ok = baseline_fit(y, u, lo, hi)
        base_results.append((cost, ok))
    base_s = time.perf_counter() - t0

    # Compare on the same objective: fimkit's −ℓ differs from ½ Σ r² by a constant.
    const = 0.5 * y.size * np.log(2 * np.pi * SIGMA**2)
    fimkit_best = min(c for c, _ in fimkit_results) - const
    base_best = min(c for c, _ in base_results)
    rows = [
        ("starts", args.starts, ""),
        ("fimkit compile (first fit)", f"{compile_s:.2f}", "s"),
        ("fimkit total, all starts", f"{fimkit_s:.2f}", "s"),
        ("baseline total, all starts", f"{base_s:.2f}", "s"),
        ("speed-up baseline / fimkit", f"{base_s / fimkit_s:.1f}", "x (target >= 20)"),
        ("best ½Σr², fimkit", f"{fimkit_best:.6f}", ""),
        ("best ½Σr², baseline", f"{base_best:.6f}", ""),
        ("fimkit starts converged", sum(ok for _, ok in fimkit_results), ""),
        ("baseline starts converged", sum(ok for _, ok in base_results), ""),
    ]
    for name, value, unit in rows:
        print(f"{name:<32}{value!s:>14}  {unit}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({n: str(v) for n, v, _ in rows}, indent=2))
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
