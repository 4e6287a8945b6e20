"""How fast is exact structural identifiability with fimkit?

Run it from the repository root, with the package installed (``pip install -e .``)::

    python benchmarks/identifiability_speed.py            # about 20 s on 2 cores
    python benchmarks/identifiability_speed.py --strict   # exit status 1 when a target is missed

It prints a table and writes everything it measured to
``benchmarks/results/identifiability_speed.json`` (``--out`` changes the path).

What each number means
----------------------
``fk.identifiability.structural_identifiability`` on each model: seconds from the call to the
result (median of ``--reps`` calls with the same seed, after one untimed call that warms up numpy and
sympy), the default settings (3 trials, identifiable combinations searched). The cases:

- I1–I9: the models of ``shared/reference/identifiability.md`` (equations copied below), with the
  reference's conventions (unknown initial conditions unless stated; generic inputs where the
  reference has an unspecified input). Target: each under 10 s.
- ``kholodenko2000``: the MAPK cascade with negative feedback of Kholodenko (Eur. J. Biochem. 267,
  2000): 8 states, 21 parameters, Michaelis–Menten rate laws, initial amounts known, MAPK-PP
  observed.
- ``kholodenko2000_unknown_ic``: the same with every initial amount unknown (29 unknowns) and three
  outputs.
- ``kholodenko2000_scaled``: unknown initial amounts and a measurement with an unknown scale factor
  (30 unknowns): amounts, Michaelis constants and maximal rates scale together, so nothing but a few
  ratios is identifiable; the combination search is large and may stop at its limits.

The table also gives the rank, the highest output derivative used, whether the answer is certified
(see ``docs/structural_identifiability.md``), the bound on the probability of a wrong answer, and the
identifiable combinations found.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "identifiability_speed.json"
TARGET_S = 10.0
SEED = 2026

# shared/reference/identifiability.md, I1–I9 (I5: the observed parameter N is the constant state Npop).
GOODWIN = {
    "x1": "-b*x1 + 1/(c + x4)",
    "x2": "alpha*x1 - beta*x2",
    "x3": "gamma*x2 - delta*x3",
    "x4": "sigma*x4*(gamma*x2 - delta*x3)/x3",
}
C2M = {"x1": "-(p3 + p4)*x1 + p5*x2 + p6*u", "x2": "p4*x1 - p5*x2"}
REFERENCE = {
    "I1": dict(
        rhs={"A": "-(CL/V)*A"}, outputs={"y": "A/V"}, params=["CL", "V", "D"], ic={"A": "D"}
    ),
    "I1 D known": dict(
        rhs={"A": "-(CL/V)*A"},
        outputs={"y": "A/V"},
        params=["CL", "V", "D"],
        ic={"A": "D"},
        known_params=["D"],
    ),
    "I2": dict(
        rhs={"x0": "-(a01 + a21)*x0 + a12*x1", "x1": "a21*x0 - a12*x1"},
        outputs={"y": "x0"},
        params=["a01", "a21", "a12"],
    ),
    "I3": dict(
        rhs={"x1": "-(k1 + k2)*x1 + k3*x2 + u", "x2": "k2*x1 - (k3 + k4)*x2"},
        outputs={"y": "x1"},
        params=["k1", "k2", "k3", "k4"],
        inputs={"u": None},
    ),
    "I4": dict(
        rhs={"x1": "-(k01 + k21)*x1 + k12*x2 + u", "x2": "k21*x1 - (k02 + k12)*x2"},
        outputs={"y": "x1/v"},
        params=["k01", "k21", "k12", "k02", "v"],
        inputs={"u": None},
    ),
    "I5": dict(
        rhs={"S": "-b*S*I/Npop", "E": "b*S*I/Npop - nu*E", "I": "nu*E - a*I", "Npop": "0"},
        outputs={"y1": "I", "y2": "Npop"},
        params=["b", "nu", "a", "N"],
        ic={"Npop": "N"},
    ),
    "I6": dict(
        rhs=GOODWIN,
        outputs={"y": "x1"},
        params=["b", "c", "alpha", "beta", "gamma", "delta", "sigma"],
    ),
    "I6 x2, x3 known": dict(
        rhs=GOODWIN,
        outputs={"y": "x1"},
        params=["b", "c", "alpha", "beta", "gamma", "delta", "sigma"],
        known_ic=["x2", "x3"],
    ),
    "I7": dict(
        rhs={"x0": "a*x0 - b*x0*x1 + u", "x1": "c*x1 + d*x0*x1"},
        outputs={"y": "x0"},
        params=["a", "b", "c", "d"],
        inputs={"u": None},
    ),
    "I8": dict(rhs={"x": "alpha*x^2"}, outputs={"y": "x^2"}, params=["alpha"]),
    "I9 constant": dict(
        rhs=C2M,
        outputs={"y": "x1"},
        params=["p3", "p4", "p5", "p6"],
        inputs={"u": "1"},
        ic={"x1": 1, "x2": 0},
    ),
    "I9 ramp": dict(
        rhs=C2M,
        outputs={"y": "x1"},
        params=["p3", "p4", "p5", "p6"],
        inputs={"u": "t"},
        ic={"x1": 1, "x2": 0},
    ),
}

# Kholodenko 2000 (BioModels BIOMD0000000010): Hill coefficient n = 1.
RATES = {
    "v1": "V1*MKKK/((1 + MAPK_PP/Ki)*(K1 + MKKK))",
    "v2": "V2*MKKK_P/(K2 + MKKK_P)",
    "v3": "k3*MKKK_P*MKK/(K3 + MKK)",
    "v4": "k4*MKKK_P*MKK_P/(K4 + MKK_P)",
    "v5": "V5*MKK_PP/(K5 + MKK_PP)",
    "v6": "V6*MKK_P/(K6 + MKK_P)",
    "v7": "k7*MKK_PP*MAPK/(K7 + MAPK)",
    "v8": "k8*MKK_PP*MAPK_P/(K8 + MAPK_P)",
    "v9": "V9*MAPK_PP/(K9 + MAPK_PP)",
    "v10": "V10*MAPK_P/(K10 + MAPK_P)",
}
_v = {k: f"({e})" for k, e in RATES.items()}
MAPK_RHS = {
    "MKKK": f"{_v['v2']} - {_v['v1']}",
    "MKKK_P": f"{_v['v1']} - {_v['v2']}",
    "MKK": f"{_v['v6']} - {_v['v3']}",
    "MKK_P": f"{_v['v3']} + {_v['v5']} - {_v['v4']} - {_v['v6']}",
    "MKK_PP": f"{_v['v4']} - {_v['v5']}",
    "MAPK": f"{_v['v10']} - {_v['v7']}",
    "MAPK_P": f"{_v['v7']} + {_v['v9']} - {_v['v8']} - {_v['v10']}",
    "MAPK_PP": f"{_v['v8']} - {_v['v9']}",
}
MAPK_PARAMS = [
    "V1", "Ki", "K1", "V2", "K2", "k3", "K3", "k4", "K4", "V5", "K5",
    "V6", "K6", "k7", "K7", "k8", "K8", "V9", "K9", "V10", "K10",
]  # fmt: skip
MAPK_IC = {
    "MKKK": 90,
    "MKKK_P": 10,
    "MKK": 280,
    "MKK_P": 10,
    "MKK_PP": 10,
    "MAPK": 280,
    "MAPK_P": 10,
    "MAPK_PP": 10,
}
LARGE = {
    "kholodenko2000": dict(rhs=MAPK_RHS, outputs={"y": "MAPK_PP"}, params=MAPK_PARAMS, ic=MAPK_IC),
    "kholodenko2000_unknown_ic": dict(
        rhs=MAPK_RHS,
        outputs={"y1": "MAPK_PP", "y2": "MKK_PP", "y3": "MKKK_P"},
        params=MAPK_PARAMS,
    ),
    "kholodenko2000_scaled": dict(
        rhs=MAPK_RHS, outputs={"y": "s*MAPK_PP"}, params=[*MAPK_PARAMS, "s"]
    ),
}


def build(fk, spec: dict):
    from fimkit.models.symbolic import SymbolicModel

    model_args = {
        k: v for k, v in spec.items() if k in ("rhs", "outputs", "params", "inputs", "ic")
    }
    options = {k: v for k, v in spec.items() if k in ("known_ic", "known_params")}
    return SymbolicModel(**model_args), options


def measure(name: str, spec: dict, reps: int) -> dict:
    import fimkit as fk
    from fimkit.identifiability.structural import structural_identifiability

    model, options = build(fk, spec)
    n_states, n_params = len(model.states), len(model.params)
    result = structural_identifiability(model, seed=SEED, **options)  # warm-up (untimed)
    times = []
    for _ in range(reps):
        a = time.perf_counter()
        result = structural_identifiability(model, seed=SEED, **options)
        times.append(time.perf_counter() - a)
    return {
        "case": name,
        "states": n_states,
        "parameters": n_params,
        "unknowns": result.size,
        "rank": result.rank,
        "orders": result.orders,
        "certified": result.certified,
        "nonidentifiable": result.nonidentifiable,
        "combinations": [str(c) for c in result.combinations],
        "combinations_complete": result.combinations_complete,
        "error_bound": result.error_bound,
        "seconds_median": statistics.median(times),
        "seconds": times,
        "notes": list(result.notes),
    }


def print_report(rows: list[dict], meta: dict) -> None:
    print(
        f"fimkit {meta['fimkit']} | sympy {meta['sympy']} | {meta['cpu_count']} CPUs | load "
        f"{meta['loadavg_start'][0]:.2f} at start, {meta['loadavg_end'][0]:.2f} at end | "
        f"{meta['elapsed_s']:.0f} s"
    )
    head = (
        f"{'case':<26} {'n':>2} {'p':>3} {'unk':>3} {'rank':>4} {'ord':>3} {'cert':>4} "
        f"{'P(wrong)≤':>9} {'time s':>7}  {'target':<7} non-identifiable / combinations"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        target = r.get("target")
        met = "" if target is None else ("yes" if r["seconds_median"] < target else "NO")
        what = ", ".join(r["nonidentifiable"]) or "-"
        if r["combinations"]:
            what += " | " + ", ".join(r["combinations"])
        if r["nonidentifiable"] and r["combinations_complete"] is False:
            what += " (incomplete)"
        print(
            f"{r['case']:<26} {r['states']:>2} {r['parameters']:>3} {r['unknowns']:>3} "
            f"{r['rank']:>4} {r['orders']:>3} {'yes' if r['certified'] else 'NO':>4} "
            f"{r['error_bound']:>9.1e} {r['seconds_median']:>7.3f}  {met:<7} {what[:90]}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    parser.add_argument("--reps", type=int, default=3, help="timed calls per case (>= 1)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error("--reps must be >= 1")

    start = time.perf_counter()
    load_start = os.getloadavg()
    import sympy

    import fimkit

    rows = []
    for name, spec in REFERENCE.items():
        row = measure(name, spec, args.reps)
        row["target"] = TARGET_S
        rows.append(row)
    for name, spec in LARGE.items():
        rows.append(measure(name, spec, args.reps))
    meta = {
        "fimkit": fimkit.__version__,
        "sympy": sympy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "elapsed_s": time.perf_counter() - start,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": SEED,
        "reps": args.reps,
    }
    print_report(rows, meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "cases": rows}, indent=1))
    print(f"\nJSON: {args.out}")
    missed = [r["case"] for r in rows if r.get("target") and r["seconds_median"] >= r["target"]]
    if missed:
        print("targets missed: " + ", ".join(missed))
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
