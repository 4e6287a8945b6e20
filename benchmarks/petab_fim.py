"""How fast is the Fisher information of a PEtab benchmark problem with fimkit (and with AMICI)?

Run it from the repository root, with ``pip install -e '.[petab]'``::

    python benchmarks/petab_fim.py                   # about 3 minutes on 2 cores
    python benchmarks/petab_fim.py --problems Boehm_JProteomeRes2014 --reps 50

It prints a table and writes what it measured, raw samples included, to
``benchmarks/results/petab_fim.json`` (git-ignored; ``--out`` changes the path). The PEtab
collection is read from ``../shared/data/petab-benchmark`` (``FIMKIT_SHARED_DATA`` overrides
``../shared/data``).

What each number means
----------------------
Each problem is measured in a fresh Python process, so one problem's compilation never helps
another:

- *load*: seconds of ``load_petab`` (reading the tables and the SBML file, checking them,
  sympy, code generation). ``import fimkit`` is not included; it is reported separately.
- *first FIM*: seconds of the first ``problem.fisher_information()`` (tracing, XLA compilation
  and one solve), with the persistent compilation cache disabled (cold), and in a second process
  that finds the programs in a fresh cache directory filled by the first (warm).
- *per FIM*: median seconds of later ``fisher_information()`` calls at the nominal parameters
  (one forward-sensitivity solve of all conditions; the log-likelihood and its gradient come with
  it), ``--reps`` calls. Solver settings: the problem's preset in
  ``fimkit.models.petab.SOLVER_PRESETS`` (all four: Rodas5P in fimkit's own Rosenbrock loop, at
  rtol = atol = 1e-8; see docs/sbml_petab.md); the *solver* column names it. ``--solver NAME``
  overrides the presets (e.g. ``--solver kvaerno5`` for the diffrax solver).
- *peak RSS*: ``ru_maxrss`` of the cold process, MiB.

AMICI (only when ``import amici`` works): the same process imports the PEtab problem with
``amici.petab`` (generated C++ compiled into a Python module: *import + compile*), then times
``amici.petab.simulations.simulate_petab`` with forward sensitivities at rtol = atol = 1e-8 and
the FIM from AMICI's ``sllh``/``s2llh`` (median of ``--reps``). The ratio column is fimkit's time
over AMICI's (targets: per FIM <= 0.5; load + first FIM <= 0.5 × import + compile).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "petab_fim.json"
PROBLEMS = (
    "Boehm_JProteomeRes2014",
    "Crauste_CellSystems2017",
    "Fujita_SciSignal2010",
    "Zheng_PNAS2012",
)
# AMICI, forward sensitivities with FIM, 2-core machine of this kind (../shared/data/README.md).
AMICI_README_MS = {
    "Boehm_JProteomeRes2014": 5.3,
    "Crauste_CellSystems2017": 10.6,
    "Fujita_SciSignal2010": 72.6,
    "Zheng_PNAS2012": 34.0,
}


def shared_data() -> Path:
    env = os.environ.get("FIMKIT_SHARED_DATA")
    return Path(env) if env else HERE.parents[1] / "shared" / "data"


def problem_yaml(name: str) -> Path:
    folder = shared_data() / "petab-benchmark" / name
    path = folder / f"{name}.yaml"
    return path if path.is_file() else next(folder.glob("*.yaml"))


def _maxrss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def child(name: str, reps: int, with_amici: bool, solver: str | None = None) -> dict:
    """Runs in a fresh process: fimkit timings, then AMICI's when asked."""
    t0 = time.perf_counter()
    import warnings

    import fimkit  # noqa: F401
    from fimkit.models.petab import load_petab

    out: dict = {"import_s": time.perf_counter() - t0}
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problem = load_petab(problem_yaml(name), solver=solver)
    out["load_s"] = time.perf_counter() - t
    t = time.perf_counter()
    F = problem.fisher_information()
    out["first_fim_s"] = time.perf_counter() - t
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        problem.fisher_information()
        samples.append(time.perf_counter() - t)
    out["per_fim_s"] = statistics.median(samples)
    out["per_fim_samples"] = samples
    out["loglike"] = problem.loglike()
    out["n_params"] = len(F.names)
    out["solver"] = {
        k: v for k, v in problem.solver_options.items() if isinstance(v, str | int | float)
    }
    out["maxrss_mib"] = _maxrss_mib()
    if with_amici:
        out["amici"] = _amici(name, reps)
    return out


def _amici(name: str, reps: int) -> dict:
    """AMICI's import, compile and forward-sensitivity FIM (when amici is installed)."""
    import amici
    import amici.petab.petab_import as amici_import
    import amici.petab.simulations as amici_sim
    import petab.v1 as petab_v1

    res: dict = {"version": amici.__version__}
    problem = petab_v1.Problem.from_yaml(str(problem_yaml(name)))
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        model = amici_import.import_petab_problem(
            problem, model_output_dir=tmp, model_name=f"{name}_bench", force_compile=True
        )
        res["import_compile_s"] = time.perf_counter() - t
        solver = model.getSolver()
        solver.setRelativeTolerance(1e-8)
        solver.setAbsoluteTolerance(1e-8)
        solver.setSensitivityOrder(amici.SensitivityOrder.first)
        solver.setSensitivityMethod(amici.SensitivityMethod.forward)
        model.setAddSigmaResiduals(False)
        samples = []
        for _ in range(reps):
            t = time.perf_counter()
            r = amici_sim.simulate_petab(problem, model, solver=solver)
            samples.append(time.perf_counter() - t)
        res["per_fim_s"] = statistics.median(samples)
        res["per_fim_samples"] = samples
        res["loglike"] = float(r["llh"])
    return res


def run_child(name: str, reps: int, cache: str, with_amici: bool, solver: str | None) -> dict:
    env = dict(os.environ, FIMKIT_CACHE_DIR=cache)
    cmd = [sys.executable, __file__, "--child", name, "--reps", str(reps)]
    if solver:
        cmd += ["--solver", solver]
    if with_amici:
        cmd.append("--amici")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"The {name} process failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def have_amici() -> bool:
    try:
        import amici  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    parser.add_argument("--reps", type=int, default=20, help="FIMs timed per problem")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-amici", action="store_true", help="skip AMICI even if installed")
    parser.add_argument("--solver", help="solver for all problems (default: each one's preset)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--amici", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.reps, args.amici, args.solver)))
        return 0
    if not (shared_data() / "petab-benchmark").is_dir():
        print(f"The PEtab benchmark collection is not at {shared_data() / 'petab-benchmark'}.")
        return 1
    with_amici = have_amici() and not args.no_amici
    load_start = os.getloadavg()
    started = time.time()
    results = {}
    for name in args.problems:
        cold = run_child(name, args.reps, "", with_amici, args.solver)
        with tempfile.TemporaryDirectory() as cache:
            run_child(name, 1, cache, False, args.solver)  # fills the cache
            warm = run_child(name, 1, cache, False, args.solver)
        results[name] = {"cold": cold, "warm": {k: warm[k] for k in ("load_s", "first_fim_s")}}
        print(f"{name}: done", file=sys.stderr, flush=True)

    head = (
        f"{'problem':<26}{'solver':>9}{'params':>7}{'load s':>8}{'1st FIM s':>11}{'warm s':>8}"
        f"{'per FIM ms':>12}{'AMICI ms':>10}{'ratio':>7}{'RSS MiB':>9}"
    )
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        c = r["cold"]
        amici_ms = c["amici"]["per_fim_s"] * 1e3 if "amici" in c else AMICI_README_MS.get(name)
        ratio = c["per_fim_s"] * 1e3 / amici_ms if amici_ms else float("nan")
        print(
            f"{name:<26}{c['solver']['solver']:>9}{c['n_params']:>7}{c['load_s']:>8.2f}{c['first_fim_s']:>11.2f}"
            f"{r['warm']['load_s'] + r['warm']['first_fim_s']:>8.2f}{c['per_fim_s'] * 1e3:>12.2f}"
            f"{amici_ms or float('nan'):>10.2f}{ratio:>7.2f}{c['maxrss_mib']:>9.0f}"
        )
    source = (
        "measured in this run" if with_amici else "from ../shared/data/README.md (not installed)"
    )
    print(
        f"AMICI column: {source}. warm = load + first FIM with a filled compilation cache. "
        f"{os.cpu_count()} CPUs | load average {load_start[0]:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} at end | {time.time() - started:.0f} s"
    )
    meta = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "amici_measured": with_amici,
        "amici_readme_ms": AMICI_README_MS,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
