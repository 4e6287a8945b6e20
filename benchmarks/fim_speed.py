"""How fast is a Fisher information with fimkit, against the scipy code users write by hand today?

Run it from the repository root, with the package installed (``pip install -e .``)::

    python benchmarks/fim_speed.py            # about 1 minute on 2 cores
    python benchmarks/fim_speed.py --strict   # exit status 1 when a target is missed

It prints a table and writes everything it measured, raw samples included, to
``benchmarks/results/fim_speed.json`` (the folder is git-ignored; ``--out`` changes the path).

What each number means
----------------------
The model is the benchmark kinase cascade of ``shared/reference/cascade.md`` (6 states, 8 parameters,
outputs x3 and x4 at 40 times, σ = 0.01), FIM in log parameters, solver rtol 1e-8, atol 1e-10.

*Time per FIM* (main process, median of repeated calls of ``fk.fisher_information`` after the first,
compiling, call; the persistent cache is disabled in this process so nothing depends on what an
earlier run left on disk):

- ``pk_bolus``: the analytic one-compartment model ``fimkit.examples.pk_bolus()`` (3 parameters).
- ``cascade tsit5``: ``fimkit.examples.kinase_cascade()`` (explicit Tsit5).
- ``cascade kvaerno5``: ``kinase_cascade(solver="kvaerno5")`` (implicit, for stiff systems).
- ``cascade rodas5p``: ``kinase_cascade(solver="rodas5p")`` (linearly implicit Rosenbrock, for stiff
  systems; fimkit's own loop).

*Baseline*: the cascade written by hand with ``scipy.integrate.solve_ivp`` (LSODA, rtol 1e-8,
atol 1e-10), sensitivities by central finite differences in log k (step ``FD_STEP``: the relative
step of k), F = SᵀS/σ². Median of ``--baseline-reps`` FIMs.

*Speed-up*: baseline time / fimkit time, both measured in this run (machines are noisy, so speed
targets are ratios). The headline is the explicit cascade; target >= 100×.

*Diagnostic, tsit5 at rtol 1e-6*: the same cascade at rtol 1e-6, atol 1e-8, where fimkit's FIM is
about as accurate as the baseline's (not a target; the headline stays at rtol 1e-8).

*Accuracy*: max_j |F_jj / F_jj(ref) − 1| against the reference diagonal of cascade.md (computed
with Dopri8 at rtol 1e-10); cascade.md's tolerance is 1e-6.

*First FIM, cold*: a fresh Python process with the persistent compilation cache disabled
(``FIMKIT_CACHE_DIR=""``); seconds from the launch of the process (before ``import fimkit``) to
the return of its first cascade FIM, compilation included. Target < 5 s.

*First FIM, warm*: the same with ``FIMKIT_CACHE_DIR`` set to a fresh temporary directory: one process
fills the cache, the next ones are timed. Target < 1.5 s. ``FIM program loaded from cache`` says
whether those processes found the cascade's FIM program on disk (JAX refuses to store programs
that contain host callbacks). The diagnostic row with ``EQX_ON_ERROR=nan`` repeats the warm
measurement with Equinox's runtime checks compiled without host callbacks: what the cache could give.

*import fimkit*: seconds of ``import fimkit`` alone in those processes; a separate process splits
it into jax, diffrax (with equinox, lineax, optimistix), scipy.stats and the rest. The first-FIM
processes also split their first call into tracing, lowering and XLA compilation (or cache load),
from ``jax.monitoring`` events.

*Peak memory*: ``ru_maxrss`` of this process (after everything above) and the largest of the
subprocesses. Target < 1 GiB.

Process timings are medians over ``--procs`` processes each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "fim_speed.json"

# The benchmark kinase cascade (shared/reference/cascade.md).
K_NOMINAL = (1.0, 0.5, 2.0, 0.3, 1.5, 0.4, 0.8, 0.2)
SIGMA = 0.01
REF_DIAG = (
    4651.91108,
    818.858377,
    14775.9091,
    5074.10799,
    174795.364,
    132170.448,
    2069452.85,
    1137444.71,
)
REF_RTOL = 1e-6  # cascade.md's tolerance on the diagonal
# Central differences in log k. 1e-4 (a relative step of k) sits on the plateau where the error is
# set by LSODA's rtol, not by the step: on the cascade 1e-2 gives 3e-5, 1e-3 7e-7, 1e-4..1e-5 3.6e-7.
FD_STEP = 1e-4

TARGET_SPEEDUP = 100.0
TARGET_COLD_S = 5.0
TARGET_WARM_S = 1.5
TARGET_RSS_MIB = 1024.0

LAUNCH_ENV = "FIM_SPEED_LAUNCH"


def _maxrss_mib(who: int = resource.RUSAGE_SELF) -> float:
    rss = resource.getrusage(who).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


# ---------------------------------------------------------------------------------------------------
# Subprocess side: these run in fresh interpreters (``fim_speed.py --child ...``) and print one JSON
# line. Only the standard library is imported before the timed imports.
# ---------------------------------------------------------------------------------------------------
def child_first_fim() -> dict:
    """Launch → first cascade FIM, with a split of where the time goes."""
    launch = float(os.environ[LAUNCH_ENV])
    t_enter = time.time()
    import fimkit as fk

    t_import = time.time()

    import logging
    from collections import Counter, defaultdict

    import jax.monitoring

    durations: dict[str, float] = defaultdict(float)
    events: Counter = Counter()
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, secs, **kw: durations.__setitem__(event, durations[event] + secs)
    )
    jax.monitoring.register_event_listener(lambda event, **kw: events.update([event]))

    # JAX says at DEBUG level why it does not write a program to the persistent cache.
    not_written: list[str] = []

    class _Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            msg = record.getMessage()
            if "Not writing persistent cache entry" in msg:
                not_written.append(msg)

    compiler_log = logging.getLogger("jax._src.compiler")
    compiler_log.addHandler(_Catch())
    compiler_log.setLevel(logging.DEBUG)
    compiler_log.propagate = False

    ex = fk.examples.kinase_cascade()
    F = fk.fisher_information(ex.model, ex.theta, ex.design, noise=ex.noise, scale="log")
    t_first = time.time()
    a = time.perf_counter()
    fk.fisher_information(ex.model, ex.theta, ex.design, noise=ex.noise, scale="log")
    second = time.perf_counter() - a

    diag = [float(F.matrix[i, i]) for i in range(len(REF_DIAG))]
    cache = fk._jax.cache_dir()
    entries = (
        sorted(p.name for p in cache.iterdir()) if cache is not None and cache.exists() else []
    )
    return {
        "interpreter_start_s": t_enter - launch,
        "import_fimkit_s": t_import - t_enter,
        "first_fim_s": t_first - launch,
        "first_fim_call_s": t_first - t_import,
        "second_fim_s": second,
        "trace_s": durations.get("/jax/core/compile/jaxpr_trace_duration", 0.0),
        "lower_s": durations.get("/jax/core/compile/jaxpr_to_mlir_module_duration", 0.0),
        "compile_or_load_s": durations.get("/jax/core/compile/backend_compile_duration", 0.0),
        "cache_hits": events.get("/jax/compilation_cache/cache_hits", 0),
        "cache_misses": events.get("/jax/compilation_cache/cache_misses", 0),
        "cache_requests": events.get("/jax/compilation_cache/compile_requests_use_cache", 0),
        "cache_not_written": not_written,
        "cache_dir": None if cache is None else str(cache),
        "cache_entries": entries,
        "max_rel_err_diag": max(abs(d / r - 1) for d, r in zip(diag, REF_DIAG, strict=True)),
        "maxrss_mib": _maxrss_mib(),
        "backend": jax.default_backend(),
    }


def child_imports() -> dict:
    """The cost of ``import fimkit`` split by its heavy dependencies (cumulative order)."""
    t0 = time.perf_counter()
    import jax

    t1 = time.perf_counter()
    import diffrax  # noqa: F401  (with equinox, lineax, optimistix)

    t2 = time.perf_counter()
    import scipy.stats  # noqa: F401

    t3 = time.perf_counter()
    import fimkit  # noqa: F401

    t4 = time.perf_counter()
    return {
        "jax_s": t1 - t0,
        "diffrax_s": t2 - t1,
        "scipy_stats_s": t3 - t2,
        "fimkit_rest_s": t4 - t3,
        "total_s": t4 - t0,
        "jax_version": jax.__version__,
    }


CHILDREN = {"first-fim": child_first_fim, "imports": child_imports}


def run_child(kind: str, cache_dir: str, extra_env: dict[str, str] | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "EQX_ON_ERROR"}
    env["FIMKIT_CACHE_DIR"] = cache_dir
    env.update(extra_env or {})
    env[LAUNCH_ENV] = repr(time.time())
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", kind],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"The {kind!r} subprocess failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------------------------------
# Main-process side.
# ---------------------------------------------------------------------------------------------------
def time_calls(fn, reps: int) -> list[float]:
    """Seconds per call of `fn`, `reps` times (the caller has already made the first call)."""
    out = []
    for _ in range(reps):
        a = time.perf_counter()
        fn()
        out.append(time.perf_counter() - a)
    return out


def baseline_fim():
    """The cascade FIM as users write it by hand: solve_ivp (LSODA) + central differences."""
    import numpy as np
    from scipy.integrate import solve_ivp

    times = np.linspace(0.5, 20, 40)

    def rhs(t, x, k):
        x1, x2, x3, x4, x5, x6 = x
        u = 1.0
        return [
            k[0] * u * (1 - x1) - k[1] * x1,
            k[2] * x1 * (1 - x2) - k[3] * x2,
            k[4] * x2 * (1 - x3) - k[5] * x3,
            k[6] * x3 - k[7] * x4,
            0.5 * x4 - 0.3 * x5,
            0.2 * x5 - 0.1 * x6,
        ]

    def outputs(k):
        sol = solve_ivp(
            rhs,
            (0.0, 20.0),
            np.zeros(6),
            method="LSODA",
            t_eval=times,
            rtol=1e-8,
            atol=1e-10,
            args=(k,),
        )
        if not sol.success:
            raise RuntimeError(sol.message)
        return np.concatenate([sol.y[2], sol.y[3]])  # x3 at 40 times, then x4

    def fim(log_k):
        cols = []
        for i in range(log_k.size):
            step = np.zeros_like(log_k)
            step[i] = FD_STEP
            up, down = outputs(np.exp(log_k + step)), outputs(np.exp(log_k - step))
            cols.append((up - down) / (2 * FD_STEP))
        S = np.column_stack(cols)
        return S.T @ S / SIGMA**2

    return fim, np.log(np.asarray(K_NOMINAL))


def max_rel_err(matrix) -> float:
    return max(abs(float(matrix[i][i]) / r - 1) for i, r in enumerate(REF_DIAG))


def summarise(samples: list[float]) -> dict:
    s = sorted(samples)
    q = statistics.quantiles(s, n=4) if len(s) >= 2 else [s[0]] * 3
    return {"median": statistics.median(s), "min": s[0], "q1": q[0], "q3": q[2], "n": len(s)}


def measure_in_process(reps: int, baseline_reps: int) -> dict:
    # In-process numbers must not depend on what an earlier run left in the user's cache, and the
    # benchmark should not write there: the persistent cache is off in this process.
    os.environ["FIMKIT_CACHE_DIR"] = ""
    os.environ.pop("EQX_ON_ERROR", None)
    a = time.perf_counter()
    import fimkit as fk

    import_s = time.perf_counter() - a
    res: dict = {"import_fimkit_s": import_s}

    cases = {
        "pk_bolus": (fk.examples.pk_bolus(), "lin", max(reps, 200)),
        "cascade_tsit5": (fk.examples.kinase_cascade(), "log", max(reps, 50)),
        "cascade_kvaerno5": (fk.examples.kinase_cascade(solver="kvaerno5"), "log", reps),
        "cascade_rodas5p": (fk.examples.kinase_cascade(solver="rodas5p"), "log", reps),
        # Diagnostic: Tsit5 at the looser tolerance at which its FIM is about as accurate as the
        # baseline's (whose finite differences, not LSODA, limit its accuracy).
        "cascade_tsit5_rtol1e-6": (
            fk.examples.kinase_cascade(rtol=1e-6, atol=1e-8),
            "log",
            max(reps, 50),
        ),
    }
    calls = {}
    for name, (ex, scale, _) in cases.items():

        def call(ex=ex, scale=scale):
            return fk.fisher_information(ex.model, ex.theta, ex.design, noise=ex.noise, scale=scale)

        a = time.perf_counter()
        F = call()  # compiles
        res[name] = {"first_call_s": time.perf_counter() - a}
        if name.startswith("cascade"):
            res[name]["max_rel_err_diag"] = max_rel_err(F.matrix)
            res[name]["diag"] = [float(F.matrix[i, i]) for i in range(F.size)]
        calls[name] = call

    fim, log_k = baseline_fim()
    F = fim(log_k)  # warm-up (and the accuracy figure)
    res["baseline_scipy"] = {
        "max_rel_err_diag": max_rel_err(F),
        "diag": [float(F[i, i]) for i in range(F.shape[0])],
        "fd_step_log": FD_STEP,
    }
    calls["baseline_scipy"] = lambda: fim(log_k)
    counts = {name: n for name, (_, _, n) in cases.items()}
    counts["baseline_scipy"] = baseline_reps

    # Interleaved rounds: each round times one baseline FIM and a slice of every fimkit case, so
    # that a change of the machine's load hits both sides of the speed-up ratio alike.
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(baseline_reps):
        for name, call in calls.items():
            share = counts[name] * (r + 1) // baseline_reps - counts[name] * r // baseline_reps
            samples[name] += time_calls(call, share)
    for name, s in samples.items():
        res[name]["per_fim_s"] = summarise(s)
        res[name]["samples_s"] = s
    res["maxrss_mib"] = _maxrss_mib()
    return res


def measure_processes(procs: int) -> dict:
    out: dict = {"imports": run_child("imports", "")}
    out["cold"] = [run_child("first-fim", "") for _ in range(procs)]
    for key, extra in (("warm", {}), ("warm_eqx_nan", {"EQX_ON_ERROR": "nan"})):
        tmp = tempfile.mkdtemp(prefix="fimkit-bench-cache-")
        try:
            filler = run_child("first-fim", tmp, extra)
            runs = [run_child("first-fim", tmp, extra) for _ in range(procs)]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        out[key] = runs
        out[key + "_filler"] = filler
    return out


def med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def build_rows(ip: dict, sp: dict) -> list[dict]:
    base = ip["baseline_scipy"]["per_fim_s"]["median"]
    tsit = ip["cascade_tsit5"]["per_fim_s"]["median"]
    kv = ip["cascade_kvaerno5"]["per_fim_s"]["median"]
    ro = ip["cascade_rodas5p"]["per_fim_s"]["median"]
    pk = ip["pk_bolus"]["per_fim_s"]["median"]
    # Every compile request of a warm process must be answered from disk, the FIM program included.
    warm_loaded = all(
        r["cache_requests"] > 0 and r["cache_hits"] == r["cache_requests"] for r in sp["warm"]
    )
    peak_child = max(r["maxrss_mib"] for k in ("cold", "warm", "warm_eqx_nan") for r in sp[k])

    def row(figure, value, unit, target=None, met=None, fmt="{:.3g}"):
        return {
            "figure": figure,
            "value": value,
            "unit": unit,
            "target": target,
            "met": met,
            "text": fmt.format(value) if isinstance(value, float) else str(value),
        }

    return [
        row("FIM time, pk_bolus (analytic)", pk * 1e3, "ms"),
        row("FIM time, cascade tsit5", tsit * 1e3, "ms"),
        row("FIM time, cascade kvaerno5", kv * 1e3, "ms"),
        row("FIM time, cascade rodas5p", ro * 1e3, "ms"),
        row("FIM time, baseline scipy LSODA + central FD", base * 1e3, "ms"),
        row(
            "speed-up baseline / fimkit tsit5 (headline)",
            base / tsit,
            "x",
            f">= {TARGET_SPEEDUP:g}",
            base / tsit >= TARGET_SPEEDUP,
            "{:.1f}",
        ),
        row("speed-up baseline / fimkit kvaerno5", base / kv, "x", fmt="{:.1f}"),
        row("speed-up baseline / fimkit rodas5p", base / ro, "x", fmt="{:.1f}"),
        row(
            "diagnostic: speed-up, tsit5 at rtol 1e-6 (accuracy of baseline)",
            base / ip["cascade_tsit5_rtol1e-6"]["per_fim_s"]["median"],
            "x",
            fmt="{:.1f}",
        ),
        row(
            "diagnostic: accuracy, tsit5 at rtol 1e-6",
            ip["cascade_tsit5_rtol1e-6"]["max_rel_err_diag"],
            "",
            fmt="{:.2g}",
        ),
        row("speed-up baseline / fimkit pk_bolus", base / pk, "x", fmt="{:.0f}"),
        row(
            "cost kvaerno5 / tsit5", kv / tsit, "x", "< 100 (cascade.md)", kv / tsit < 100, "{:.1f}"
        ),
        row(
            "cost rodas5p / tsit5", ro / tsit, "x", "< 100 (cascade.md)", ro / tsit < 100, "{:.1f}"
        ),
        row(
            "accuracy fimkit tsit5 (max rel err diag)",
            ip["cascade_tsit5"]["max_rel_err_diag"],
            "",
            f"<= {REF_RTOL:g}",
            ip["cascade_tsit5"]["max_rel_err_diag"] <= REF_RTOL,
            "{:.2g}",
        ),
        row(
            "accuracy fimkit kvaerno5",
            ip["cascade_kvaerno5"]["max_rel_err_diag"],
            "",
            f"<= {REF_RTOL:g}",
            ip["cascade_kvaerno5"]["max_rel_err_diag"] <= REF_RTOL,
            "{:.2g}",
        ),
        row(
            "accuracy fimkit rodas5p",
            ip["cascade_rodas5p"]["max_rel_err_diag"],
            "",
            f"<= {REF_RTOL:g}",
            ip["cascade_rodas5p"]["max_rel_err_diag"] <= REF_RTOL,
            "{:.2g}",
        ),
        row(
            "accuracy baseline",
            ip["baseline_scipy"]["max_rel_err_diag"],
            "",
            fmt="{:.2g}",
        ),
        row("import fimkit (fresh process)", med(sp["cold"] + sp["warm"], "import_fimkit_s"), "s"),
        row(
            "first FIM, cold (launch -> FIM, no cache)",
            med(sp["cold"], "first_fim_s"),
            "s",
            f"< {TARGET_COLD_S:g}",
            med(sp["cold"], "first_fim_s") < TARGET_COLD_S,
        ),
        row(
            "first FIM, warm cache (launch -> FIM)",
            med(sp["warm"], "first_fim_s"),
            "s",
            f"< {TARGET_WARM_S:g}",
            med(sp["warm"], "first_fim_s") < TARGET_WARM_S,
        ),
        row(
            "FIM program loaded from cache (warm)",
            "yes" if warm_loaded else "no",
            "",
            "yes",
            warm_loaded,
        ),
        row(
            "diagnostic: warm, EQX_ON_ERROR=nan",
            med(sp["warm_eqx_nan"], "first_fim_s"),
            "s",
        ),
        row(
            "peak RSS, main process",
            ip["maxrss_mib"],
            "MiB",
            f"< {TARGET_RSS_MIB:g}",
            ip["maxrss_mib"] < TARGET_RSS_MIB,
            "{:.0f}",
        ),
        row(
            "peak RSS, subprocesses (max)",
            peak_child,
            "MiB",
            f"< {TARGET_RSS_MIB:g}",
            peak_child < TARGET_RSS_MIB,
            "{:.0f}",
        ),
    ]


def print_report(rows: list[dict], ip: dict, sp: dict, meta: dict) -> None:
    print()
    print(
        f"fimkit {meta['fimkit']} | jax {meta['jax']} | diffrax {meta['diffrax']} | "
        f"{meta['cpu_count']} CPUs | load average {meta['loadavg_start'][0]:.2f} at start, "
        f"{meta['loadavg_end'][0]:.2f} at end | {meta['elapsed_s']:.0f} s"
    )
    if max(meta["loadavg_start"][0], meta["loadavg_end"][0]) > 0.5 * (meta["cpu_count"] or 1):
        print("note: the machine was busy during this run; absolute timings are noisy.")
    w = max(len(r["figure"]) for r in rows)
    header = f"{'figure':<{w}}  {'value':>10}  {'unit':<4}  {'target':<20}  met"
    print(header)
    print("-" * len(header))
    for r in rows:
        met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
        print(
            f"{r['figure']:<{w}}  {r['text']:>10}  {r['unit']:<4}  {r['target'] or '':<20}  {met}"
        )

    print("\nwhere the time of a fresh process goes (medians, s):")
    imp = sp["imports"]
    print(
        f"  import: jax {imp['jax_s']:.2f} + diffrax/equinox/lineax/optimistix "
        f"{imp['diffrax_s']:.2f} + scipy.stats {imp['scipy_stats_s']:.2f} + rest of fimkit "
        f"{imp['fimkit_rest_s']:.2f} = {imp['total_s']:.2f}"
    )
    for key in ("cold", "warm", "warm_eqx_nan"):
        runs = sp[key]
        print(
            f"  {key:<13} start {med(runs, 'interpreter_start_s'):.2f} | import "
            f"{med(runs, 'import_fimkit_s'):.2f} | first call "
            f"{med(runs, 'first_fim_call_s'):.2f} (trace {med(runs, 'trace_s'):.2f}, lower "
            f"{med(runs, 'lower_s'):.2f}, compile/load {med(runs, 'compile_or_load_s'):.2f}) "
            f"| total {med(runs, 'first_fim_s'):.2f} | cache hits "
            f"{runs[0]['cache_hits']}/{runs[0]['cache_requests']}"
        )
    skipped = sorted({m for r in sp["warm"] for m in r["cache_not_written"]})
    for m in skipped:
        print(f"  JAX: {m}")
    print(
        "\nin-process first call (cache off): "
        + ", ".join(
            f"{k} {ip[k]['first_call_s']:.2f} s"
            for k in ("pk_bolus", "cascade_tsit5", "cascade_kvaerno5", "cascade_rodas5p")
        )
        + f"; import fimkit {ip['import_fimkit_s']:.2f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    parser.add_argument("--reps", type=int, default=30, help="FIMs timed per fimkit case (>= 20)")
    parser.add_argument("--baseline-reps", type=int, default=10, help="baseline FIMs (>= 5)")
    parser.add_argument("--procs", type=int, default=3, help="processes per cold/warm figure")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(CHILDREN[args.child]()))
        return 0
    if args.reps < 20 or args.baseline_reps < 5 or args.procs < 1:
        parser.error("--reps must be >= 20, --baseline-reps >= 5, --procs >= 1")

    start = time.perf_counter()
    load_start = os.getloadavg()
    # Subprocesses first, while this process is idle and has not imported JAX.
    sp = measure_processes(args.procs)
    ip = measure_in_process(args.reps, args.baseline_reps)

    import diffrax
    import jax
    import scipy

    import fimkit

    meta = {
        "fimkit": fimkit.__version__,
        "jax": jax.__version__,
        "diffrax": diffrax.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "elapsed_s": time.perf_counter() - start,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    rows = build_rows(ip, sp)
    print_report(rows, ip, sp, meta)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"meta": meta, "table": rows, "in_process": ip, "processes": sp}, indent=1)
    )
    print(f"\nJSON: {args.out}")
    missed = [r["figure"] for r in rows if r["met"] is False]
    if missed:
        print("targets missed: " + "; ".join(missed))
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
