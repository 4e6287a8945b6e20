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
  ``fimkit.models.petab.SOLVER_PRESETS`` (Rodas5P in fimkit's own Rosenbrock loop for Boehm,
  Fujita and Zheng, Tsit5 in its own explicit loop for Crauste, all at rtol = atol = 1e-8; see
  docs/sbml_petab.md); the *solver* column names it. ``--solver NAME``
  overrides the presets (e.g. ``--solver kvaerno5`` for the diffrax solver).
- *peak RSS*: ``ru_maxrss`` of the cold process, MiB.

AMICI (only when ``import amici`` works; amici 1.x, run with the venv's ``bin`` on PATH so that
AMICI's SWIG and CMake are used): the same process, after fimkit, reads the PEtab problem and
imports it with ``amici.importers.petab.v1.import_petab_problem`` (generated C++ compiled into a
Python module in a temporary folder outside the repository: *import + compile*), builds the
parameter mapping and the ``ExpData`` objects once (*setup*), then times one FIM as: parameters
filled in, ``run_simulations`` (CVODES, forward sensitivities, first order, rtol = atol = 1e-8) and
AMICI's per-condition ``rdata.FIM`` summed onto the estimated parameters (median of ``--reps``;
the first call separately). Also reported: the C++ time AMICI measures itself, and
``simulate_petab`` (which rebuilds the mapping and the ``ExpData`` objects on every call). The
ratio column is fimkit's time over AMICI's (targets: per FIM <= 0.5; load + first FIM <= 0.5 ×
AMICI's import + compile + setup + first FIM). Both log-likelihoods at the nominal parameters are
printed, and the largest difference between the two FIMs outside the noise parameters.
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
        out["amici"] = _amici(name, reps, F)
    return out


def _amici(name: str, reps: int, fimkit_fim=None) -> dict:
    """AMICI's import, compile and forward-sensitivity FIM (when amici is installed).

    Written against amici 1.x (``amici.importers.petab.v1``, ``amici.sim.sundials``). The model is
    compiled into a temporary folder outside the repository. Timed per FIM, as a user computing
    FIMs at new parameters would: the parameters filled into the ``ExpData`` objects (built once,
    with the parameter mapping, in *setup*), ``run_simulations`` (CVODES, forward sensitivities,
    first order, rtol = atol = 1e-8) and the per-condition ``rdata.FIM`` summed onto the estimated
    PEtab parameters (on their PEtab scales, like fimkit's). ``simulate_petab``, which rebuilds
    the parameter mapping and the ``ExpData`` objects on every call and returns no FIM, is timed
    too (``simulate_petab_s``), as is the C++ time AMICI reports (``cpu_s``, ``cpu_time_total``:
    pre-equilibration included).
    """
    import re

    import numpy as np

    t = time.perf_counter()
    import amici
    import amici.sim.sundials as asd  # before any compiled model module is imported
    import petab.v1 as petab_v1
    from amici.importers.petab.v1 import import_petab_problem
    from amici.sim.sundials.petab.v1 import create_edatas, fill_in_parameters, simulate_petab

    # Documented as amici.sim.sundials.petab.v1.create_parameter_mapping, not exported there in 1.0.
    from amici.sim.sundials.petab.v1._parameter_mapping import create_parameter_mapping

    import_s = time.perf_counter() - t

    res: dict = {"version": amici.__version__, "import_amici_s": import_s}
    with tempfile.TemporaryDirectory(prefix="amici_models_") as tmp:
        t = time.perf_counter()
        problem = petab_v1.Problem.from_yaml(str(problem_yaml(name)))
        model = import_petab_problem(
            problem, output_dir=tmp, model_name=f"{name}_bench", compile_=True
        )
        res["import_compile_s"] = time.perf_counter() - t

        t = time.perf_counter()
        solver = model.create_solver()
        solver.set_relative_tolerance(1e-8)
        solver.set_absolute_tolerance(1e-8)
        solver.set_sensitivity_order(asd.SensitivityOrder.first)
        solver.set_sensitivity_method(asd.SensitivityMethod.forward)
        model.set_add_sigma_residuals(False)
        conditions = problem.get_simulation_conditions_from_measurement_df()
        mapping = create_parameter_mapping(
            petab_problem=problem,
            simulation_conditions=conditions,
            scaled_parameters=True,
            amici_model=model,
        )
        edatas = create_edatas(
            amici_model=model, petab_problem=problem, simulation_conditions=conditions
        )
        x_ids = list(problem.x_free_ids)
        x_nominal = dict(zip(problem.x_ids, problem.get_x_nominal(scaled=True), strict=True))
        x_nominal = {k: v for k, v in x_nominal.items() if k in mapping.free_symbols}
        model_ids = model.get_free_parameter_ids()
        res["setup_s"] = time.perf_counter() - t

        selections: list = []  # per condition: (plist index, estimated-parameter index) pairs

        def fim_once():
            fill_in_parameters(
                edatas=edatas,
                problem_parameters=x_nominal,
                scaled_parameters=True,
                parameter_mapping=mapping,
                amici_model=model,
            )
            rdatas = asd.run_simulations(model, solver, edatas, num_threads=1, failfast=True)
            if not selections:
                for rdata, cond in zip(rdatas, mapping, strict=True):
                    pairs = [
                        (j, x_ids.index(cond.map_sim_var[model_ids[ip]]))
                        for j, ip in enumerate(rdata.plist)
                        if cond.map_sim_var[model_ids[ip]] in x_ids
                    ]
                    selections.append(pairs)
            F = np.zeros((len(x_ids), len(x_ids)))
            llh = 0.0
            for rdata, pairs in zip(rdatas, selections, strict=True):
                if rdata.status != asd.AMICI_SUCCESS:
                    raise RuntimeError(f"AMICI failed on {name}: status {rdata.status}")
                P = np.zeros((len(rdata.plist), len(x_ids)))
                for j, k in pairs:
                    P[j, k] = 1.0
                F += P.T @ rdata.FIM @ P
                llh += rdata.llh
            return F, llh, sum(rdata.cpu_time_total for rdata in rdatas) / 1e3

        t = time.perf_counter()
        F, llh, _ = fim_once()
        res["first_fim_s"] = time.perf_counter() - t
        samples, cpu = [], []
        for _ in range(reps):
            t = time.perf_counter()
            F, llh, cpu_s = fim_once()
            samples.append(time.perf_counter() - t)
            cpu.append(cpu_s)
        res["per_fim_s"] = statistics.median(samples)
        res["per_fim_samples"] = samples
        res["cpu_s"] = statistics.median(cpu)
        res["loglike"] = float(llh)
        res["fim"] = F.tolist()
        res["fim_names"] = x_ids

        sim = []
        for _ in range(max(3, reps // 4)):
            t = time.perf_counter()
            r = simulate_petab(problem, amici_model=model, solver=solver)
            sim.append(time.perf_counter() - t)
        res["simulate_petab_s"] = statistics.median(sim)
        res["simulate_petab_loglike"] = float(r["llh"])

    if fimkit_fim is not None:
        # fimkit's names are "log10(k)", "log(k)" or "k"; AMICI's FIM is on the same PEtab scales.
        ids = [re.sub(r"^(log10|log)\((.*)\)$", r"\2", n) for n in fimkit_fim.names]
        order = [ids.index(p) for p in x_ids]
        B = np.asarray(fimkit_fim.matrix)[np.ix_(order, order)]
        # AMICI's FIM is the Gauss-Newton sum of residual sensitivities: for noise parameters it
        # is not the expected information, so compare the block of the other parameters.
        noise = set()
        for text in list(problem.observable_df["noiseFormula"].astype(str)) + (
            list(problem.measurement_df["noiseParameters"].astype(str))
            if "noiseParameters" in problem.measurement_df
            else []
        ):
            noise |= set(re.findall(r"[A-Za-z_]\w*", text))
        keep = [i for i, p in enumerate(x_ids) if p not in noise]
        d = np.sqrt(np.abs(np.diag(B)))
        scaled = np.abs(F - B) / np.maximum(np.outer(d, d), 1e-300)
        res["fim_noise_parameters"] = [p for p in x_ids if p in noise]
        res["fim_max_scaled_diff"] = float(scaled[np.ix_(keep, keep)].max()) if keep else None
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    res["compile_maxrss_mib"] = children / 1024 if sys.platform != "darwin" else children / 2**20
    res["maxrss_mib"] = _maxrss_mib()
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
    if with_amici:
        head = (
            f"{'AMICI':<26}{'import+compile s':>17}{'setup s':>8}{'1st FIM s':>10}"
            f"{'per FIM ms':>11}{'C++ ms':>8}{'simulate_petab ms':>18}{'startup ratio':>14}"
            f"{'RSS MiB':>8}"
        )
        print()
        print(head)
        print("-" * len(head))
        for name, r in results.items():
            c, a = r["cold"], r["cold"]["amici"]
            amici_start = a["import_compile_s"] + a["setup_s"] + a["first_fim_s"]
            print(
                f"{name:<26}{a['import_compile_s']:>17.2f}{a['setup_s']:>8.3f}"
                f"{a['first_fim_s']:>10.3f}{a['per_fim_s'] * 1e3:>11.2f}{a['cpu_s'] * 1e3:>8.2f}"
                f"{a['simulate_petab_s'] * 1e3:>18.2f}"
                f"{(c['load_s'] + c['first_fim_s']) / amici_start:>14.2f}"
                f"{a['maxrss_mib']:>8.0f}"
            )
        print(
            "startup ratio = fimkit (load + 1st FIM) / AMICI (import+compile + setup + 1st FIM); "
            "RSS: peak of the process after fimkit and AMICI (compiler processes not included)."
        )
        head = (
            f"{'log-likelihood':<26}{'fimkit':>18}{'AMICI':>18}{'rel. diff':>11}"
            f"{'FIM diff':>10}  noise parameters (left out of FIM diff)"
        )
        print()
        print(head)
        print("-" * len(head))
        for name, r in results.items():
            c, a = r["cold"], r["cold"]["amici"]
            rel = abs(c["loglike"] - a["loglike"]) / abs(a["loglike"])
            fd = a.get("fim_max_scaled_diff")
            print(
                f"{name:<26}{c['loglike']:>18.9f}{a['loglike']:>18.9f}{rel:>11.1e}"
                f"{fd if fd is not None else float('nan'):>10.1e}  "
                f"{', '.join(a.get('fim_noise_parameters', [])) or '-'}"
            )
        print(
            "FIM diff = max |F_AMICI - F_fimkit| / sqrt(F_ii F_jj) (fimkit's diagonal) over the "
            "parameters that are not noise parameters (AMICI's FIM for those is the Gauss-Newton "
            "sum of residual sensitivities, not the expected information)."
        )
    source = (
        f"measured in this run (amici {results[next(iter(results))]['cold']['amici']['version']})"
        if with_amici
        else "from ../shared/data/README.md (not installed)"
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
