"""Geodesic-accelerated Levenberg–Marquardt against plain Levenberg–Marquardt on sloppy fits.

Both runs use `fimkit.geometry.levenberg_marquardt` with the same damping strategy (Transtrum and
Sethna 2012: λ up ×2 on a rejected step, down ÷3 on an accepted one, Marquardt's scaling by the
largest diagonal of JᵀJ seen), the same tolerances and the same starts; the only difference is the
geodesic acceleration (δ = δv + ½ δa, r_vv by nested forward-mode jvps). Problems:

- `sum_exp`: y(t) = Σ_{i=1..4} exp(−k_i t) at 30 times in [0.1, 5], noise-free data from
  k = (0.3, 1, 3, 10), σ = 0.01, fitted in log k from starts log k_true + N(0, 2.5²) — the sloppy
  sum of exponentials on which plain LM "evaporates" rates towards 0 or ∞;
- `cascade`: the kinase cascade of shared/reference/cascade.md with k1 fixed at 1 (7 rates, outputs
  x3 and x4 at 40 times, data simulated with σ = 0.01), fitted in log k without bounds from
  Latin-hypercube starts in [0.1, 10] × nominal (the starts of benchmarks/fit_speed.py).

A run "reaches the optimum" when its cost ½Σr² first comes within a target of the best cost any run
found for that problem: best + 1e-6 for `sum_exp` (noise-free data, best ≈ 0), best + 0.01 for
`cascade` (Δχ² = 0.02: statistically the same fit; the cascade's optimum lies along a flat valley
towards k4 → 0 that no unbounded method finishes crawling). The table reports, per problem and
method: the starts that reached the optimum; the mean numbers of Jacobian evaluations (accepted
steps + 1), residual evaluations and second directional derivatives r_vv spent until then, over
the starts from which *both* methods reached it (like for like); and the wall time of all starts
with compilation excluded (the runs continue to their own stopping rule or `max_iter`). Not a
timed test: the evaluation counts are the point.

Run: ``python benchmarks/geodesic_lm.py [--starts 30] [--cascade-starts 12] [--cascade-iter 300]``; writes JSON to
benchmarks/results/geodesic_lm.json.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from scipy.stats import qmc

import fimkit as fk
from fimkit.geometry import levenberg_marquardt
from fimkit.geometry.geodesic_lm import least_squares_functions
from fimkit.likelihood import Likelihood

RATES = ["k1", "k2", "k3", "k4"]
SUM_EXP_TRUE = np.array([0.3, 1.0, 3.0, 10.0])
CASCADE_NOMINAL = np.array([0.5, 2.0, 0.3, 1.5, 0.4, 0.8, 0.2])  # k2 … k8; k1 = 1
CASCADE_NAMES = [f"k{i}" for i in range(2, 9)]
SIGMA = 0.01
MAX_ITER = 1000


def sum_exp_problem(n_starts: int):
    model = fk.AnalyticModel(
        lambda t, p: sum(jnp.exp(-p[k] * t) for k in RATES), params=RATES, name="sum_exp"
    )
    times = np.linspace(0.1, 5.0, 30)
    y = np.asarray(fk.predict(model, SUM_EXP_TRUE, times)["y"])
    data = fk.Data(times, y)
    rng = np.random.default_rng(1)
    starts = np.log(SUM_EXP_TRUE) + rng.normal(0.0, 2.5, size=(n_starts, 4))
    return model, data, starts


def cascade_problem(n_starts: int):
    def rhs(t, x, p):
        k2, k3, k4, k5, k6, k7, k8 = (p[n] for n in CASCADE_NAMES)
        return [
            1.0 * (1 - x[0]) - k2 * x[0],
            k3 * x[0] * (1 - x[1]) - k4 * x[1],
            k5 * x[1] * (1 - x[2]) - k6 * x[2],
            k7 * x[2] - k8 * x[3],
            0.5 * x[3] - 0.3 * x[4],
            0.2 * x[4] - 0.1 * x[5],
        ]

    model = fk.ODEModel(
        rhs,
        np.zeros(6),
        lambda t, x, p: [x[2], x[3]],
        params=CASCADE_NAMES,
        states=[f"x{i}" for i in range(1, 7)],
        outputs=["y1", "y2"],
        name="cascade_k1_fixed",
    )
    design = fk.Design(times=np.linspace(0.5, 20, 40))
    truth = dict(zip(CASCADE_NAMES, CASCADE_NOMINAL, strict=True))
    data = fk.simulate_data(model, truth, design, noise=fk.Gaussian(sigma=SIGMA), key=0)
    lo, hi = np.log(CASCADE_NOMINAL * 0.1), np.log(CASCADE_NOMINAL * 10)
    starts = qmc.scale(qmc.LatinHypercube(d=7, seed=1).random(n_starts), lo, hi)
    return model, data, starts


def run(name: str, model, data, starts, max_iter: int, tol: float) -> tuple[list[tuple], dict]:
    lik = Likelihood.build(model, data, fk.Gaussian(sigma=SIGMA))
    residuals, jacobian, avv = least_squares_functions(lik, "log")
    # Compile every program once before timing.
    levenberg_marquardt(residuals, jacobian, starts[0], avv=avv, max_iter=2)
    results = {}
    for method, use_avv in (("plain LM", False), ("geodesic LM", True)):
        runs, t0 = [], time.perf_counter()
        for u0 in starts:
            # The trace: (residual evaluations, Jacobians, second derivatives, cost) at every
            # residual evaluation, to find when a run first came within `tol` of the best cost.
            counts, trace = {"res": 0, "jac": 0, "avv": 0}, []

            def res(u, counts=counts, trace=trace):
                r = residuals(u)
                counts["res"] += 1
                cost = 0.5 * float(r @ r) if np.all(np.isfinite(r)) else np.inf
                trace.append((counts["res"], counts["jac"], counts["avv"], cost))
                return r

            def jac(u, counts=counts):
                counts["jac"] += 1
                return jacobian(u)

            def second(u, v, counts=counts):
                counts["avv"] += 1
                return avv(u, v)

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    r = levenberg_marquardt(
                        res, jac, u0, avv=second if use_avv else None, max_iter=max_iter
                    )
                except fk.errors.FimkitError:
                    r = None
            runs.append((r, trace))
        results[method] = (runs, time.perf_counter() - t0)
    best = min(r.cost for runs, _ in results.values() for r, _ in runs if r is not None)
    target = best + tol

    def first_reach(trace):
        for n_res, n_jac, n_avv, cost in trace:
            if cost <= target:
                # The Jacobian at the point reached is computed next: count it.
                return n_res, n_jac + 1, n_avv
        return None

    reach = {m: [first_reach(t) for _, t in runs] for m, (runs, _) in results.items()}
    both = [k for k in range(len(starts)) if all(reach[m][k] is not None for m in reach)]
    rows, raw = [], {"best_cost": best, "target": target, "starts": len(starts), "both": len(both)}
    for method, (runs, seconds) in results.items():
        hits = reach[method]
        sub = [hits[k] for k in both]

        def mean(i, sub=sub):
            return f"{np.mean([h[i] for h in sub]):.1f}" if sub else "-"

        row = (
            name,
            method,
            f"{sum(h is not None for h in hits)}/{len(runs)}",
            mean(1),
            mean(0),
            mean(2) if method == "geodesic LM" else "0",
            f"{seconds:.2f}",
        )
        rows.append(row)
        raw[method] = {
            "reached": int(sum(h is not None for h in hits)),
            "mean_jacobians_to_reach": row[3],
            "mean_residuals_to_reach": row[4],
            "mean_avv_to_reach": row[5],
            "seconds": seconds,
            "per_start": [
                {
                    "final_cost": None if r is None else r.cost,
                    "message": None if r is None else r.message,
                    "reached_at": hits[k],
                }
                for k, (r, _) in enumerate(runs)
            ],
        }
    return rows, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=30)
    parser.add_argument("--cascade-starts", type=int, default=12)
    parser.add_argument("--cascade-iter", type=int, default=300)
    parser.add_argument("--out", default="benchmarks/results/geodesic_lm.json")
    args = parser.parse_args()

    rows, raw = [], {}
    problems = (
        ("sum_exp", sum_exp_problem(args.starts), MAX_ITER, 1e-6),
        ("cascade", cascade_problem(args.cascade_starts), args.cascade_iter, 0.01),
    )
    for name, (model, data, starts), max_iter, tol in problems:
        r, d = run(name, model, data, starts, max_iter, tol)
        rows += r
        raw[name] = d
        print(
            f"{name}: best ½Σr² {d['best_cost']:.6g}; target best + {tol:g}; both methods "
            f"reached it from {d['both']} of {d['starts']} starts"
        )
    header = ("problem", "method", "reached", "Jacobians*", "residuals*", "r_vv*", "time (s)")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        print("  ".join(x.rjust(w) for x, w in zip(r, widths, strict=True)))
    print(
        "* evaluations until the cost first came within the target of the best, mean over the "
        "starts from which both methods got there"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(raw, indent=2))
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
