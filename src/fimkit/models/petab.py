"""PEtab import: an estimation problem (SBML model, conditions, measurements, observables,
parameters) as one JAX program from the estimated parameters to the log-likelihood.

`load_petab(yaml_path)` checks the tables (`lint_petab`, every problem at once), reads the SBML
model (`fimkit.models.sbml`), and returns a `PetabProblem`:

- ``nominal()``: the nominal values of the estimated parameters, on their PEtab scales;
- ``loglike(x)``, ``gradient(x)``: the log-likelihood and its gradient on those scales;
- ``fisher_information(x)``: the expected Fisher information (a `fimkit.FisherInformation`, so
  `fimkit.identifiability` and `fimkit.sloppiness` read it), exact for estimated noise parameters;
- ``observed_information(x)``: minus the Hessian of the log-likelihood;
- ``simulate(x)``: the measurement table with the simulated values and standard deviations.

How a problem is simulated (PEtab version 1 semantics):

- Every (pre-equilibration, simulation) condition pair in the measurement table is one experiment.
  All experiments are solved together (vmapped), from t = 0 to their last measurement time.
- Model parameters take, in order of precedence, the condition table's value, the parameter
  table's (estimated: from x; fixed: its nominal value), or the SBML file's value. Species (and
  other states) named in the condition table are (re)initialised to the given value.
- Pre-equilibration simulates the pre-equilibration condition until the state stops changing
  (the weighted RMS norm of dy/dt, with weights 1/(atol_ss + rtol_ss·|y|), falls below 1), then
  applies the simulation condition. Sensitivities of the steady state come from the implicit
  function theorem (with the conservation laws), not from the solve.
- Piecewise expressions that switch at a time ``c`` (free of the states), and time-triggered
  events, split the time axis: each interval is one solve, and events are applied between them.
- Observables and noise formulas are sympy expressions (PEtab math) with the placeholders
  ``observableParameter{n}_{observableId}`` and ``noiseParameter{n}_{observableId}`` filled per
  measurement. Noise distributions: ``normal`` and ``laplace``, with observable transformations
  ``lin``, ``log`` and ``log10``; the log-likelihood is the density of the untransformed
  measurement (it includes the Jacobian −log(y), −log(y·ln 10) of a log transformation), as the
  PEtab specification defines it.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp

from ..errors import FimkitError, FimkitWarning, SolverError, describe
from ..information.fim import FisherInformation
from . import _rosenbrock
from ._petab_io import (
    read_condition_table,
    read_measurement_table,
    read_observable_table,
    read_parameter_table,
    sympify_petab,
)
from ._rk import tsit5_solve
from ._rosenbrock import TABLEAUS as ROSENBROCK_METHODS
from ._rosenbrock import rosenbrock_sensitivities, rosenbrock_solve, rosenbrock_steady
from .sbml import (
    TIME,
    TIME_SWITCH,
    SBMLError,
    SBMLSystem,
    compile_function,
    initial_definitions,
    jacobian_definitions,
    read_sbml,
    switch_times,
)

SCALES = ("lin", "log", "log10")
TRANSFORMATIONS = ("lin", "log", "log10")
DISTRIBUTIONS = ("normal", "laplace")

# Solver settings per benchmark problem, where the defaults (Kvaerno5, rtol = atol = 1e-8, as in
# AMICI's benchmark tests) are not the best choice. Keys are problem ids (the YAML file's folder).
# Measured with benchmarks/petab_fim.py (see docs/sbml_petab.md): Rodas5P, fimkit's own
# Rosenbrock loop, is faster per FIM than Kvaerno5 on all four, and as accurate.
SOLVER_PRESETS: dict[str, dict[str, Any]] = {
    "Boehm_JProteomeRes2014": {"solver": "rodas5p"},
    # Not stiff at the nominal parameters: Tsit5 in fimkit's own loop is 3.5× faster per FIM than
    # Rodas5P and closer to the converged FIM (1.6e-3 against 3.8e-3) and log-likelihood.
    "Crauste_CellSystems2017": {"solver": "tsit5"},
    # pAkt is ~1e-3: Kvaerno5 needs atol = 1e-12 here (at 1e-8 the log-likelihood is 3e-5
    # off); Rodas5P at atol = 1e-8 is within 3.4e-7 (relative) of the converged value, AMICI's
    # reference within 2.0e-7.
    "Fujita_SciSignal2010": {"solver": "rodas5p"},
    "Zheng_PNAS2012": {"solver": "rodas5p"},
}
NEWTON_TOL_FACTOR = 1e4
# Up to this many experiments are solved one after the other (lax.map): faster to compile and, on
# few conditions, to run; more are solved in lockstep (vmap).
MAP_EXPERIMENTS = 16
# Singular values of the Jacobian at a steady state below this fraction of the largest belong to
# conservation laws (moieties, constant species).
CONSERVATION_RTOL = 1e-11
# Rosenbrock stages are traced one by one (faster to run) up to this many states, in a loop (the
# model's right-hand side and its derivatives compiled once per step, not once per stage) beyond.
UNROLL_MAX_STATES = 10
# Pre-equilibration in a compiled program of its own (see `PetabProblem._program`).
SPLIT_PREEQUILIBRATION = True
SOLVERS = ("kvaerno5", "kvaerno3", "rodas5p", "rodas4", "tsit5", "dopri5", "dopri8")
DEFAULT_SOLVER = {
    "solver": "kvaerno5",
    "rtol": 1e-8,
    "atol": 1e-8,
    "max_steps": 100_000,
    "steady_state_rtol": 1e-10,
    "steady_state_atol": 1e-12,
    "steady_state_max_time": 1e9,
    "batch": "auto",
    "unroll": "auto",
}


class PetabError(FimkitError):
    """A PEtab problem that cannot be loaded; `issues` lists every problem found."""

    def __init__(self, message: str, issues: Sequence[ValidationIssue] = ()):
        super().__init__(message)
        self.issues = list(issues)


class PetabWarning(FimkitWarning):
    """A PEtab problem loads, but something in it looks wrong (an unused parameter, ...)."""


@dataclass(frozen=True)
class ValidationIssue:
    """One problem found by `lint_petab`: `level` is ``"error"`` or ``"warning"``."""

    level: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"


def _pandas():
    try:
        import pandas
        import yaml
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Loading PEtab problems needs pandas and pyyaml: pip install 'fimkit[petab]'"
        ) from exc
    return pandas, yaml


# -- reading the files ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Tables:
    root: Path
    name: str
    sbml_path: Path
    conditions: Any
    measurements: Any
    observables: Any
    parameters: Any


def _read_tables(yaml_path: str | os.PathLike) -> _Tables:
    pd, yaml = _pandas()

    path = Path(yaml_path)
    if not path.is_file():
        raise PetabError(f"The PEtab problem file {str(path)!r} does not exist.")
    with open(path) as fh:
        spec = yaml.safe_load(fh)
    if not isinstance(spec, dict) or "problems" not in spec:
        raise PetabError(f"{str(path)!r} is not a PEtab problem file (no 'problems' entry).")
    version = str(spec.get("format_version", "1"))
    if not version.startswith("1"):
        raise PetabError(
            f"{str(path)!r} has PEtab format_version {version!r}; fimkit reads version 1."
        )
    problems = spec["problems"]
    if len(problems) != 1:
        raise PetabError(
            f"{str(path)!r} defines {len(problems)} problems; fimkit reads files with one."
        )
    prob = problems[0]
    root = path.parent

    def files(key: str) -> list[Path]:
        names = prob.get(key) or []
        return [root / n for n in names]

    sbml = files("sbml_files")
    if len(sbml) != 1:
        raise PetabError(f"{str(path)!r} must name exactly one SBML file. Got {len(sbml)}.")
    missing = [
        str(f)
        for f in [
            *sbml,
            *files("condition_files"),
            *files("measurement_files"),
            *files("observable_files"),
            root / spec.get("parameter_file", ""),
        ]
        if not f.is_file()
    ]
    if missing:
        raise PetabError(f"{str(path)!r} refers to files that do not exist: {missing}.")

    def read(reader, f):
        try:
            return reader(f)
        except ValueError as exc:
            raise PetabError(f"Cannot read the PEtab table {str(f)!r}: {exc}") from None

    def concat(getter, key):
        dfs = [read(getter, f) for f in files(key)]
        return pd.concat(dfs) if len(dfs) > 1 else dfs[0]

    name = path.stem if path.stem != "problem" else root.name
    if name not in SOLVER_PRESETS and root.name in SOLVER_PRESETS:
        name = root.name
    return _Tables(
        root=root,
        name=name,
        sbml_path=sbml[0],
        conditions=concat(read_condition_table, "condition_files"),
        measurements=concat(read_measurement_table, "measurement_files"),
        observables=concat(read_observable_table, "observable_files"),
        parameters=read(read_parameter_table, root / spec["parameter_file"]),
    )


def _isnan(value: Any) -> bool:
    try:
        return bool(np.isnan(float(value)))
    except (TypeError, ValueError):
        return False


def _tokens(value: Any) -> list[Any]:
    """The entries of an observableParameters/noiseParameters cell: numbers and ids."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, int | float | np.number):
        return [float(value)]
    text = str(value).strip()
    if not text:
        return []
    out: list[Any] = []
    for tok in text.split(";"):
        tok = tok.strip()
        try:
            out.append(float(tok))
        except ValueError:
            out.append(tok)
    return out


def _placeholders(expr: sp.Expr, kind: str, obs_id: str) -> dict[int, sp.Symbol]:
    pattern = re.compile(rf"^{kind}(\d+)_{re.escape(obs_id)}$")
    out = {}
    for s in expr.free_symbols:
        m = pattern.match(s.name)
        if m:
            out[int(m.group(1))] = s
    return out


# -- the problem ------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Observable:
    id: str
    formula: sp.Expr
    noise: sp.Expr
    transformation: str
    distribution: str
    obs_placeholders: tuple[sp.Symbol, ...]
    noise_placeholders: tuple[sp.Symbol, ...]


class _Builder:
    """Reads the tables against the model, collecting every issue before anything is compiled."""

    def __init__(self, tables: _Tables, system: SBMLSystem | None):
        self.t = tables
        self.system = system
        self.issues: list[ValidationIssue] = []
        self.sympify = sympify_petab

    def error(self, msg: str) -> None:
        self.issues.append(ValidationIssue("error", msg))

    def warn(self, msg: str) -> None:
        self.issues.append(ValidationIssue("warning", msg))

    # parameters ---------------------------------------------------------------------------------
    def check_parameters(self) -> None:
        par = self.t.parameters
        for col in ("parameterScale", "lowerBound", "upperBound", "nominalValue", "estimate"):
            if col not in par.columns:
                self.error(f"The parameter table has no column {col!r}.")
        if self.issues:
            return
        dupes = par.index[par.index.duplicated()].tolist()
        if dupes:
            self.error(f"The parameter table lists {dupes} more than once.")
        for pid, row in par.iterrows():
            scale = row["parameterScale"]
            if scale not in SCALES:
                self.error(
                    f"Parameter {pid!r} has parameterScale {scale!r}; it must be one of "
                    f"{list(SCALES)}."
                )
                continue
            est = row["estimate"]
            if est not in (0, 1) and not (isinstance(est, float) and est in (0.0, 1.0)):
                self.error(f"Parameter {pid!r} has estimate {est!r}; it must be 0 or 1.")
                continue
            nominal = row["nominalValue"]
            if _isnan(nominal):
                if int(est) == 0:
                    self.error(f"Parameter {pid!r} is not estimated but has no nominalValue.")
                else:
                    self.warn(f"Estimated parameter {pid!r} has no nominalValue.")
            if int(est) == 1:
                lo, hi = float(row["lowerBound"]), float(row["upperBound"])
                if not lo <= hi:
                    self.error(f"Parameter {pid!r} has lowerBound {lo} > upperBound {hi}.")
                if scale in ("log", "log10") and lo <= 0:
                    self.error(
                        f"Parameter {pid!r} is on the {scale} scale but its lowerBound is {lo} "
                        "(must be > 0)."
                    )
                if scale in ("log", "log10") and not _isnan(nominal) and float(nominal) < 0:
                    self.error(
                        f"Parameter {pid!r} is on the {scale} scale but its nominalValue is "
                        f"{nominal} (must be >= 0)."
                    )
                elif scale in ("log", "log10") and not _isnan(nominal) and float(nominal) == 0:
                    self.warn(
                        f"Parameter {pid!r} is on the {scale} scale with nominalValue 0: its "
                        "nominal value on that scale is -inf (the parameter is 0 there)."
                    )
                elif not _isnan(nominal) and not lo <= float(nominal) <= hi:
                    self.warn(
                        f"The nominalValue {nominal} of parameter {pid!r} is outside its bounds "
                        f"[{lo}, {hi}]."
                    )

        for col in ("priorType", "objectivePriorType", "initializationPriorType"):
            if col in par.columns and par[col].notna().any() and col != "initializationPriorType":
                self.warn(
                    f"The parameter table defines priors ({col!r}); fimkit's loglike is the "
                    "likelihood of the data alone and ignores them."
                )

    # observables --------------------------------------------------------------------------------
    def parse(self, text: Any, where: str) -> sp.Expr | None:
        if text is None or _isnan(text):
            return None
        try:
            expr = sp.sympify(self.sympify(text))
        except Exception as exc:
            self.error(f"Cannot parse the {where} {text!r}: {exc}")
            return None
        # PEtab writes exponents as floats ("x^2" → x**2.0); integer powers differentiate and
        # evaluate more cheaply and safely for negative bases.
        expr = expr.replace(
            lambda e: e.is_Pow and e.exp.is_Float and float(e.exp).is_integer(),
            lambda e: sp.Pow(e.base, int(e.exp)),
        )
        if "t" not in self.known_model_ids:
            expr = expr.xreplace({sp.Symbol("t", real=True): TIME})
        if "time" not in self.known_model_ids:
            expr = expr.xreplace({sp.Symbol("time", real=True): TIME})
        return expr

    @property
    def known_model_ids(self) -> set[str]:
        return set(self.system.symbols) if self.system is not None else set()

    def check_observables(self) -> dict[str, _Observable]:
        obs = self.t.observables
        out: dict[str, _Observable] = {}
        for col in ("observableFormula", "noiseFormula"):
            if col not in obs.columns:
                self.error(f"The observable table has no column {col!r}.")
        if any(i.level == "error" and "observable table" in i.message for i in self.issues):
            return out
        par_ids = set(self.t.parameters.index)
        model_ids = self.known_model_ids
        for oid, row in obs.iterrows():
            tr = row.get("observableTransformation", "lin")
            tr = "lin" if tr is None or _isnan(tr) else str(tr)
            dist = row.get("noiseDistribution", "normal")
            dist = "normal" if dist is None or _isnan(dist) else str(dist)
            if tr not in TRANSFORMATIONS:
                self.error(
                    f"Observable {oid!r} has observableTransformation {tr!r}; supported: "
                    f"{list(TRANSFORMATIONS)}."
                )
            if dist not in DISTRIBUTIONS:
                self.error(
                    f"Observable {oid!r} has noiseDistribution {dist!r}; supported: "
                    f"{list(DISTRIBUTIONS)}."
                )
            formula = self.parse(row["observableFormula"], f"observableFormula of {oid!r}")
            noise = self.parse(row["noiseFormula"], f"noiseFormula of {oid!r}")
            if formula is None or noise is None:
                if row["noiseFormula"] is None or _isnan(row["noiseFormula"]):
                    self.error(f"Observable {oid!r} has no noiseFormula.")
                continue
            ph_o = _placeholders(formula, "observableParameter", oid)
            ph_n = _placeholders(noise, "noiseParameter", oid)
            ph_o_noise = _placeholders(noise, "observableParameter", oid)
            ph_o = {**ph_o_noise, **ph_o}
            for kind, ph in (("observableParameter", ph_o), ("noiseParameter", ph_n)):
                if ph and sorted(ph) != list(range(1, max(ph) + 1)):
                    self.error(
                        f"The {kind} placeholders of observable {oid!r} are numbered "
                        f"{sorted(ph)}; they must be 1..n."
                    )
            placeholders = set(ph_o.values()) | set(ph_n.values())
            # Without the model (it failed to load) its ids are unknown: no point listing them.
            checks = (("observableFormula", formula), ("noiseFormula", noise))
            for what, expr in checks if self.system is not None else ():
                for s in expr.free_symbols:
                    if s in placeholders or s is TIME or s.name in model_ids:
                        continue
                    if s.name in par_ids:
                        continue
                    if what == "noiseFormula" and s.name in obs.index:
                        continue
                    self.error(
                        f"The {what} of observable {oid!r} refers to {s.name!r}, which is "
                        "neither a model entity, a parameter in the parameter table, nor a "
                        "placeholder of this observable."
                    )
            out[oid] = _Observable(
                oid,
                formula,
                noise,
                tr,
                dist,
                tuple(ph_o[k] for k in sorted(ph_o)),
                tuple(ph_n[k] for k in sorted(ph_n)),
            )
        # Noise formulas may refer to observables: substitute their formulas.
        subs = {sp.Symbol(o, real=True): ob.formula for o, ob in out.items()}
        for oid, ob in list(out.items()):
            if any(s in subs for s in ob.noise.free_symbols):
                out[oid] = _Observable(
                    ob.id,
                    ob.formula,
                    ob.noise.xreplace(subs),
                    ob.transformation,
                    ob.distribution,
                    ob.obs_placeholders,
                    ob.noise_placeholders,
                )
        return out

    # conditions ---------------------------------------------------------------------------------
    def check_conditions(self) -> None:
        cond = self.t.conditions
        if self.system is None:
            return
        sysm = self.system
        par_ids = set(self.t.parameters.index)
        for col in cond.columns:
            if col == "conditionName":
                continue
            if col not in sysm.symbols:
                self.error(
                    f"The condition table has a column {col!r}, which is not an id of the SBML "
                    "model."
                )
                continue
            kind = sysm.kinds.get(col)
            if col not in sysm.states and col not in sysm.constants and col not in sysm.derived:
                self.error(
                    f"The condition table sets {kind} {col!r}, which the model computes (an "
                    "assignment rule); only parameters, compartments and species can be set."
                )
                continue
            for cid, value in cond[col].items():
                if isinstance(value, str):
                    try:
                        float(value)
                    except ValueError:
                        if value not in par_ids:
                            self.error(
                                f"Condition {cid!r} sets {col!r} to {value!r}, which is neither "
                                "a number nor a parameter in the parameter table."
                            )

    # measurements -------------------------------------------------------------------------------
    def check_measurements(self, observables: Mapping[str, _Observable]) -> None:
        meas = self.t.measurements
        for col in ("observableId", "simulationConditionId", "measurement", "time"):
            if col not in meas.columns:
                self.error(f"The measurement table has no column {col!r}.")
        if any("measurement table has no column" in i.message for i in self.issues):
            return
        obs_ids = set(self.t.observables.index)
        cond_ids = set(self.t.conditions.index)
        par_ids = set(self.t.parameters.index)
        unknown = sorted(set(meas["observableId"]) - obs_ids)
        for o in unknown:
            n = int((meas["observableId"] == o).sum())
            self.error(
                f"{n} measurement(s) are of observable {o!r}, which is not in the observable table."
            )
        cols = ["simulationConditionId"]
        if "preequilibrationConditionId" in meas.columns:
            cols.append("preequilibrationConditionId")
        for col in cols:
            ids = {c for c in meas[col] if isinstance(c, str) and c}
            for c in sorted(ids - cond_ids):
                self.error(f"The measurement table's {col} {c!r} is not in the condition table.")
        times = meas["time"].astype(float)
        bad = meas[np.isnan(times) | (times == -np.inf)]
        if len(bad):
            self.error(
                f"{len(bad)} measurement time(s) are not numbers: {bad['time'].tolist()[:5]}."
            )
        if (times < 0).any():
            self.error(f"Measurement times must be >= 0. Got {times[times < 0].tolist()[:5]}.")
        values = meas["measurement"].astype(float)
        if not np.all(np.isfinite(values)):
            self.error(
                f"{int((~np.isfinite(values)).sum())} measurement value(s) are missing or not "
                "finite."
            )
        for oid, ob in observables.items():
            rows = meas[meas["observableId"] == oid]
            if not len(rows):
                self.warn(f"Observable {oid!r} has no measurements.")
                continue
            if ob.transformation in ("log", "log10"):
                v = rows["measurement"].astype(float)
                if (v <= 0).any():
                    self.error(
                        f"Observable {oid!r} is {ob.transformation}-transformed, but "
                        f"{int((v <= 0).sum())} of its measurements are <= 0: "
                        f"{v[v <= 0].tolist()[:5]}."
                    )
            for col, ph in (
                ("observableParameters", ob.obs_placeholders),
                ("noiseParameters", ob.noise_placeholders),
            ):
                cells = rows[col] if col in rows.columns else [None] * len(rows)
                counts = {len(_tokens(c)) for c in cells}
                if counts != {len(ph)}:
                    self.error(
                        f"Observable {oid!r} has {len(ph)} {col[:-1]} placeholder(s), but its "
                        f"measurements give {sorted(counts)} value(s) in {col!r}."
                    )
                for c in set(map(str, cells)):
                    for tok in _tokens(c if c != "None" and c != "nan" else None):
                        if isinstance(tok, str) and tok not in par_ids:
                            self.error(
                                f"The {col} of observable {oid!r} refer to {tok!r}, which is "
                                "not in the parameter table."
                            )

    def check_model_values(self) -> None:
        """Constants without a value and species without an initial value, unless overridden."""
        if self.system is None:
            return
        sysm = self.system
        cond = self.t.conditions
        par_ids = set(self.t.parameters.index)
        for k, v in sysm.constants.items():
            if math.isnan(v) and k not in par_ids and k not in cond.columns:
                self.warn(f"The SBML model gives no value for {k!r} (used values would be NaN).")
        for s in sysm.states:
            init = sysm.initial[s]
            if init is sp.nan and (s not in cond.columns or cond[s].isna().any()):
                self.error(
                    f"State {s!r} has no initial value in the SBML model and the condition "
                    "table does not set it in every condition."
                )

    def check_usage(self, observables: Mapping[str, _Observable]) -> None:
        if self.system is None:
            return
        used: set[str] = set(self.system.symbols)
        for ob in observables.values():
            used |= {s.name for s in ob.formula.free_symbols | ob.noise.free_symbols}
        meas = self.t.measurements
        for col in ("observableParameters", "noiseParameters"):
            if col in meas.columns:
                for c in meas[col].dropna().unique():
                    used |= {t for t in _tokens(c) if isinstance(t, str)}
        for col in self.t.conditions.columns:
            used |= {v for v in self.t.conditions[col] if isinstance(v, str)}
        par = self.t.parameters
        for pid in par.index:
            if pid not in used:
                est = "estimated " if int(par.loc[pid, "estimate"]) == 1 else ""
                self.warn(
                    f"The {est}parameter {pid!r} is not used by the model, the observables, the "
                    "conditions or the measurements."
                )


def lint_petab(yaml_path: str | os.PathLike) -> list[ValidationIssue]:
    """Check a PEtab problem and return every issue found (errors and warnings), without
    simulating: unknown ids in formulas and tables, missing parameters and values, measurements of
    unknown observables or conditions, placeholder counts, non-positive data under log
    transformations, bounds and scales, and SBML constructs fimkit does not support.
    """
    tables = _read_tables(yaml_path)
    issues, _, _ = _check(tables)
    return issues


def _check(
    tables: _Tables, system: SBMLSystem | None = None
) -> tuple[list[ValidationIssue], SBMLSystem | None, dict]:
    pre: list[ValidationIssue] = []
    if system is None:
        try:
            system = read_sbml(tables.sbml_path)
        except SBMLError as exc:
            pre.append(ValidationIssue("error", f"SBML model: {exc}"))
    b = _Builder(tables, system)
    b.issues.extend(pre)
    b.check_parameters()
    observables = b.check_observables()
    b.check_conditions()
    b.check_measurements(observables)
    b.check_model_values()
    b.check_usage(observables)
    return b.issues, system, observables


# -- compilation ------------------------------------------------------------------------------------------


class _Values:
    """The vector v = [x on the linear scale, fixed numbers]: every value the problem uses."""

    def __init__(self, estimated: Sequence[str], parameters: Any):
        self.estimated = list(estimated)
        self.index = {p: i for i, p in enumerate(self.estimated)}
        self.fixed: list[float] = [0.0]
        self.fixed_index: dict[Any, int] = {}
        self.parameters = parameters

    def source(self, token: Any) -> int:
        """Position in v of a number or of a parameter-table id."""
        if isinstance(token, str):
            if token in self.index:
                return self.index[token]
            value = float(self.parameters.loc[token, "nominalValue"])
            key = ("param", token)
        else:
            value = float(token)
            key = ("value", value if not math.isnan(value) else "nan")
        if key not in self.fixed_index:
            self.fixed_index[key] = len(self.fixed)
            self.fixed.append(value)
        return len(self.estimated) + self.fixed_index[key]

    @property
    def names(self) -> list[str | None]:
        """The parameter id at each position of v (None for anonymous numbers)."""
        out: list[str | None] = list(self.estimated)
        by_pos = {i: k for k, i in self.fixed_index.items()}
        for i in range(len(self.fixed)):
            k = by_pos.get(i)
            out.append(k[1] if k is not None and k[0] == "param" else None)
        return out


def _cell(value: Any) -> Any:
    """A condition-table cell as a number or an id (None when empty)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return float(value)


class PetabProblem:
    """A PEtab estimation problem compiled to JAX. Build it with `load_petab`.

    **Attributes:**
    - `name`: the problem's id; `system`: the SBML model as an `SBMLSystem`.
    - `parameter_ids`, `scales`, `lower_bounds`, `upper_bounds`: of the estimated parameters (the
      bounds on the parameters' scales).
    - `names`: the estimated parameters as they appear in results: ``"log10(k1)"`` for a parameter
      on the log10 scale, ``"log(k1)"`` on the natural-log scale, ``"k1"`` on the linear scale.
    - `experiments`: the (pre-equilibration condition or None, simulation condition) pairs.
    - `measurements`: the measurement table (pandas).
    - `issues`: the warnings `lint_petab` found.
    - `solver_options`: the solver settings in use.
    """

    def __init__(self, tables: _Tables, system: SBMLSystem, observables: dict, issues, options):
        self.name = tables.name
        self.system = system
        self.issues = [i for i in issues if i.level == "warning"]
        self.solver_options = dict(options)
        self.measurements = tables.measurements.reset_index(drop=True)
        self._observables = observables
        par = tables.parameters
        est = [p for p in par.index if int(par.loc[p, "estimate"]) == 1]
        self.parameter_ids = tuple(est)
        self.scales = tuple(str(par.loc[p, "parameterScale"]) for p in est)
        self.names = tuple(
            p if s == "lin" else f"{s}({p})" for p, s in zip(est, self.scales, strict=True)
        )
        self.lower_bounds = np.array(
            [
                _to_scale(float(par.loc[p, "lowerBound"]), s)
                for p, s in zip(est, self.scales, strict=True)
            ]
        )
        self.upper_bounds = np.array(
            [
                _to_scale(float(par.loc[p, "upperBound"]), s)
                for p, s in zip(est, self.scales, strict=True)
            ]
        )
        self._nominal = np.array(
            [
                _to_scale(float(par.loc[p, "nominalValue"]), s)
                for p, s in zip(est, self.scales, strict=True)
            ]
        )
        self._tables = tables
        self._build(tables)
        self._programs: dict[str, Any] = {}
        self._f_jac = None  # see `_rhs_jacobian`

    # -- structure -------------------------------------------------------------------------------
    def _build(self, tables: _Tables) -> None:
        system = self.system
        cond = tables.conditions
        par = tables.parameters
        meas = self.measurements
        values = _Values(self.parameter_ids, par)
        self._values = values
        overridden = set(par.index) | set(cond.columns)
        # Constants of the model: every SBML constant, and derived constants the tables set.
        derived = {k: v for k, v in system.derived.items() if k not in overridden}
        mp = list(system.constants) + [k for k in system.derived if k in overridden]
        self._model_params = mp
        defaults = {k: system.constants.get(k, float("nan")) for k in mp}

        def model_param_sources(cid: str | None) -> list[int]:
            out = []
            for k in mp:
                v = _cell(cond.loc[cid, k]) if cid is not None and k in cond.columns else None
                if v is None:
                    v = k if k in par.index else defaults[k]
                out.append(values.source(v))
            return out

        states = list(system.states)

        def state_overrides(cid: str) -> tuple[list[bool], list[int]]:
            mask, src = [], []
            for s in states:
                v = _cell(cond.loc[cid, s]) if s in cond.columns else None
                mask.append(v is not None)
                src.append(values.source(v) if v is not None else 0)
            return mask, src

        pre_col = meas.get("preequilibrationConditionId")
        pre_ids = [
            c if isinstance(c, str) and c else None
            for c in (pre_col if pre_col is not None else [None] * len(meas))
        ]
        sim_ids = [str(c) for c in meas["simulationConditionId"]]
        experiments = list(dict.fromkeys(zip(pre_ids, sim_ids, strict=True)))
        self.experiments = tuple(experiments)
        preeqs = list(dict.fromkeys(p for p, _ in experiments if p is not None))
        self._preeqs = tuple(preeqs)
        exp_of = [experiments.index(k) for k in zip(pre_ids, sim_ids, strict=True)]

        times = meas["time"].astype(float).to_numpy()
        # Measurements at time inf are of the steady state reached after the last finite time.
        steady_meas = np.isinf(times)
        exp_times = []
        for e in range(len(experiments)):
            finite = times[(np.asarray(exp_of) == e) & ~steady_meas]
            exp_times.append(np.unique(finite) if finite.size else np.zeros(1))
        n_t = max(len(t) for t in exp_times)
        T = np.stack([np.pad(t, (0, n_t - len(t)), mode="edge") for t in exp_times])
        time_index = np.array(
            [
                0 if np.isinf(t) else int(np.searchsorted(exp_times[e], t))
                for e, t in zip(exp_of, times, strict=True)
            ]
        )
        self._steady_meas = steady_meas
        self._T = T
        self._exp_of = np.asarray(exp_of, dtype=np.int32)
        self._time_index = time_index.astype(np.int32)

        self._P_sim = np.array([model_param_sources(s) for _, s in experiments], dtype=np.int32)
        sim_over = [state_overrides(s) for _, s in experiments]
        self._O_sim_mask = np.array([m for m, _ in sim_over], dtype=bool).reshape(
            len(experiments), len(states)
        )
        self._O_sim_src = np.array([s for _, s in sim_over], dtype=np.int32).reshape(
            len(experiments), len(states)
        )
        self._pre_of = np.array(
            [preeqs.index(p) if p is not None else -1 for p, _ in experiments], dtype=np.int32
        )
        if preeqs:
            self._P_pre = np.array([model_param_sources(p) for p in preeqs], dtype=np.int32)
            pre_over = [state_overrides(p) for p in preeqs]
            self._O_pre_mask = np.array([m for m, _ in pre_over], dtype=bool).reshape(
                len(preeqs), len(states)
            )
            self._O_pre_src = np.array([s for _, s in pre_over], dtype=np.int32).reshape(
                len(preeqs), len(states)
            )

        # Per-measurement placeholder values.
        obs_ids = meas["observableId"].astype(str).tolist()
        n_po = max([len(o.obs_placeholders) for o in self._observables.values()] + [1])
        n_pn = max([len(o.noise_placeholders) for o in self._observables.values()] + [1])
        PO = np.zeros((len(meas), n_po), dtype=np.int32)
        PN = np.zeros((len(meas), n_pn), dtype=np.int32)
        for col, arr in (("observableParameters", PO), ("noiseParameters", PN)):
            if col not in meas.columns:
                continue
            for i, cellv in enumerate(meas[col].tolist()):
                for j, tok in enumerate(_tokens(cellv)):
                    arr[i, j] = values.source(tok)
        self._PO, self._PN = PO, PN
        self._y = meas["measurement"].astype(float).to_numpy()
        self._obs_rows = {
            o: np.flatnonzero(np.asarray(obs_ids) == o).astype(np.int32) for o in self._observables
        }
        # Parameter-table ids used directly in formulas (not model constants): positions in v.
        for ob in self._observables.values():
            for s in ob.formula.free_symbols | ob.noise.free_symbols:
                if s.name in par.index and s.name not in mp:
                    values.source(s.name)
        self._fixed = np.asarray(values.fixed, dtype=np.float64)

        # -- generated functions ----------------------------------------------------------------
        sym = system.symbols
        mp_syms = [sym[k] for k in mp]
        y_syms = [sym[s] for s in states]
        defs = {sym[k]: v for k, v in derived.items()}
        for table in (system.rules, system.reactions):
            for k, v in table.items():
                defs[sym[k]] = v
        rhs = [system.rhs[s] for s in states]
        # Switching times of piecewise conditions and event times split the time axis.
        exprs = [*rhs, *defs.values()]
        switches, replace = switch_times(system, exprs)
        self._n_switch = len(switches)
        rhs = [e.xreplace(replace) for e in rhs]
        defs_switch = {k: v.xreplace(replace) for k, v in defs.items()}
        event_times = [e.time for e in system.events]
        thresholds = [*switches, *event_times]
        self._events = system.events
        self._fires_at_t0 = np.array([e.fires_at_t0 for e in system.events], dtype=bool)
        rhs_inputs = [
            ("scalar", [TIME]),
            ("vector", y_syms),
            ("vector", mp_syms),
            ("scalar", [TIME_SWITCH]),
        ]
        self._f_rhs = compile_function(rhs_inputs, rhs, defs_switch, name="rhs")
        # For `_rhs_jacobian`, which generates the Jacobian with the same arguments.
        self._rhs_symbolic = (rhs, defs_switch, rhs_inputs)
        self._f_thresholds = compile_function(
            [("vector", mp_syms)], thresholds, defs, name="thresholds"
        )
        self._f_events = [
            compile_function(
                [("scalar", [TIME]), ("vector", y_syms), ("vector", mp_syms)],
                [dict(e.assignments).get(s, sym[s]) for s in states],
                defs,
                name=f"event_{i}",
            )
            for i, e in enumerate(system.events)
        ]
        init_defs, init_exprs = initial_definitions(system)
        init_defs = {
            k: v
            for k, v in init_defs.items()
            if not (k.name in overridden and k.name in system.derived)
        }
        self._f_init = compile_function([("vector", mp_syms)], init_exprs, init_defs, name="init")
        v_syms = [sp.Symbol(n, real=True) if n is not None else None for n in values.names]
        v_syms = [s if s is None or s.name not in mp else None for s in v_syms]
        self._f_obs = {}
        for oid, ob in self._observables.items():
            po = list(ob.obs_placeholders) + [None] * (n_po - len(ob.obs_placeholders))
            pn = list(ob.noise_placeholders) + [None] * (n_pn - len(ob.noise_placeholders))
            self._f_obs[oid] = compile_function(
                [
                    ("scalar", [TIME]),
                    ("vector", y_syms),
                    ("vector", mp_syms),
                    ("vector", v_syms),
                    ("vector", po),
                    ("vector", pn),
                ],
                [ob.formula, ob.noise],
                defs,
                name=f"observable_{oid}",
            )

    # -- parameters --------------------------------------------------------------------------------
    def nominal(self) -> np.ndarray:
        """The nominal values of the estimated parameters, on their PEtab scales."""
        return self._nominal.copy()

    def _x(self, x: Any) -> np.ndarray:
        if x is None:
            x = self._nominal
        if isinstance(x, Mapping):
            unknown = [k for k in x if k not in self.parameter_ids and k not in self.names]
            if unknown:
                raise FimkitError(
                    f"The 'x' argument names unknown parameters {unknown}; the estimated "
                    f"parameters are {list(self.parameter_ids)}."
                )
            arr = self._nominal.copy()
            for k, v in x.items():
                i = self.parameter_ids.index(k) if k in self.parameter_ids else self.names.index(k)
                arr[i] = float(v)
            x = arr
        try:
            arr = np.asarray(x, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise FimkitError(
                f"The 'x' argument must be a vector of {len(self.names)} values on the PEtab "
                f"scales ({list(self.names)}). Got {describe(x)}."
            ) from exc
        if arr.size != len(self.names):
            raise FimkitError(
                f"The 'x' argument must have {len(self.names)} values ({list(self.names)}). Got "
                f"{arr.size}."
            )
        # -inf on a log scale is a parameter value of 0 (PEtab problems use it).
        ok = np.isfinite(arr) | ((arr == -np.inf) & (np.asarray(self.scales) != "lin"))
        if not np.all(ok):
            bad = [n for n, v in zip(self.names, ok, strict=True) if not v]
            raise FimkitError(
                f"The 'x' argument must be finite (or -inf on a log scale). Got non-finite "
                f"values for {bad}."
            )
        return arr

    def unscale(self, x: Any) -> dict[str, float]:
        """The estimated parameters on the linear scale, keyed by parameter id."""
        arr = self._x(x)
        return {
            p: float(_from_scale(v, s))
            for p, v, s in zip(self.parameter_ids, arr, self.scales, strict=True)
        }

    # -- the JAX program ---------------------------------------------------------------------------
    def _rhs_jacobian(self):
        """``(t, y, pm, mid) → (f, ∂f/∂t, ∂f/∂y)`` from the model's expressions (generated once,
        when a program first needs it): sparse where the Jacobian is, unlike forward-mode AD along
        unit vectors, whose derivatives the Rosenbrock sensitivity loop takes again. None where
        sympy's derivatives are not plain expressions (the loop then uses forward-mode AD)."""
        if self._f_jac is None:
            rhs, defs, inputs = self._rhs_symbolic
            y_syms, mp_syms = inputs[1][1], inputs[2][1]
            self._f_jac = False
            try:
                defs, rows = jacobian_definitions(rhs, defs, [TIME, *y_syms])
                flat = [*rhs, *(r[0] for r in rows), *(e for r in rows for e in r[1:])]
                unsupported = (sp.Derivative, sp.Subs, sp.DiracDelta)
                if any(sp.sympify(e).has(*unsupported) for e in [*flat, *defs.values()]):
                    return None
                f = compile_function(inputs, flat, defs, name="rhs_jacobian", rows=len(y_syms) + 2)
                n, m = len(y_syms), len(mp_syms)
                jax.eval_shape(f, 0.0, jnp.zeros(n), jnp.ones(m), 0.0)  # traces: no surprises
            except Exception:  # a construct sympy differentiates oddly
                return None  # forward-mode AD of the right-hand side instead

            def jacobian(t, y, pm, mid):
                out = f(t, y, pm, mid)
                return out[0], out[1], out[2:]

            self._f_jac = jacobian
        return self._f_jac or None

    def _solver(self):
        """The diffrax solver of the options, or None for fimkit's own Rosenbrock loop."""
        o = self.solver_options
        name = o["solver"]
        from .ode import EXPLICIT_SOLVERS, IMPLICIT_SOLVERS, _is_diffrax_solver, diffrax_solver

        if _is_diffrax_solver(name):
            return name
        if isinstance(name, str) and (name in ROSENBROCK_METHODS or name == "tsit5"):
            return None
        if name in EXPLICIT_SOLVERS:
            return diffrax_solver(name)
        if name in IMPLICIT_SOLVERS:
            import diffrax

            # A chord iteration that stops well before the step tolerances: at rtol 1e-8, tighter
            # iterations rarely converge within their iteration limit on stiff benchmark models,
            # and every failure rejects the step. The step's error estimate still controls
            # the accuracy (see docs/sbml_petab.md for the comparison against AMICI).
            fac = o.get("newton_tol_factor", NEWTON_TOL_FACTOR)
            root = diffrax.VeryChord(rtol=o["rtol"] * fac, atol=o["atol"] * fac)
            return diffrax_solver(name, root)
        raise FimkitError(
            f"The 'solver' option must be one of {SOLVERS} or a diffrax solver. Got "
            f"{describe(name)}."
        )

    def _dynamic_parameters(self) -> np.ndarray:
        """Indices of the estimated parameters that reach the simulation (model parameters of
        any condition, initial-value overrides, pre-equilibration), sorted: the others enter
        only observables and noise, and need no sensitivities from the solver."""
        used = set(np.asarray(self._P_sim).ravel().tolist())
        used |= set(np.asarray(self._O_sim_src)[np.asarray(self._O_sim_mask)].ravel().tolist())
        if self._preeqs:
            used |= set(np.asarray(self._P_pre).ravel().tolist())
            used |= set(np.asarray(self._O_pre_src)[np.asarray(self._O_pre_mask)].ravel().tolist())
        n = len(self.parameter_ids)
        return np.array(sorted(i for i in used if i < n), dtype=np.int32)

    def _unroll(self) -> bool:
        """Whether the Rosenbrock stages are traced one by one (see `_rosenbrock.rosenbrock_step`)."""
        unroll = self.solver_options.get("unroll", "auto")
        if unroll == "auto":
            return len(self.system.states) <= UNROLL_MAX_STATES
        return bool(unroll)

    def _one_loop(self) -> bool:
        """Whether the expected information computes the states and their sensitivities in one
        Rosenbrock loop (`rosenbrock_sensitivities`) instead of `jax.jacfwd` through the solver:
        Rosenbrock with unrolled stages, no steady-state measurements, experiments one after the
        other (in lockstep its fallback would always run), and parameters that reach the
        dynamics (Boehm: 1.25 against 1.92 ms per FIM; Fujita: 13 against 16 ms)."""
        o = self.solver_options
        batching = o["batch"]
        if batching == "auto":
            batching = "map" if len(self.experiments) <= MAP_EXPERIMENTS else "vmap"
        return (
            isinstance(o["solver"], str)
            and o["solver"] in ROSENBROCK_METHODS
            and self._unroll()
            and not bool(self._steady_meas.any())
            and (batching != "vmap" or len(self.experiments) == 1)
            and self._dynamic_parameters().size > 0
        )

    def _predict_fn(self, one_loop: bool = False):
        """x → (h, σ, status per experiment, first failing time index per experiment), and its
        two halves: x → simulated states (and statuses), and (x, states) → (h, σ); and the
        pre-equilibration, x → (steady states, statuses), or None without one."""
        o = self.solver_options
        solver = self._solver()
        # The right-hand side as one jitted call: JAX then traces its derivatives (in y, in t,
        # along the parameters, batched) once per kind and reuses them at every call site of
        # the program (stages, Jacobians, steady states), instead of re-tracing the model's
        # expressions each time; XLA inlines it, so the compiled program is the same.
        # Boehm's first FIM: tracing 1.2 -> 0.6 s; Fujita 7.1 -> 5.5 s, Zheng 14.2 -> 12.3 s.
        f_rhs, f_init, f_thr, f_events = (
            jax.jit(self._f_rhs),
            self._f_init,
            self._f_thresholds,
            self._f_events,
        )
        n_switch = self._n_switch
        fires_at_t0 = jnp.asarray(self._fires_at_t0)
        n_events = len(f_events)
        max_steps = int(o["max_steps"])
        rtol_ss, atol_ss = o["steady_state_rtol"], o["steady_state_atol"]
        t_ss = float(o["steady_state_max_time"])
        scales = self.scales
        fixed = jnp.asarray(self._fixed)
        T = jnp.asarray(self._T)
        scale_codes = np.array([SCALES.index(s) for s in scales], dtype=np.int32)

        def field(t, y, args):
            return f_rhs(t, y, args[0], args[1])

        def field_ss(t, y, args):
            return f_rhs(t, y, args, t)

        def reached_steady(t, y, args, **kwargs):
            dy = f_rhs(t, y, args, t)
            w = atol_ss + rtol_ss * jnp.abs(y)
            return jnp.sqrt(jnp.mean((dy / w) ** 2)) < 1.0

        simulate_sens = None  # the Rosenbrock loop's states and sensitivities (see `_one_loop`)
        if solver is None:
            # fimkit's own loops (Rosenbrock, or Tsit5 for non-stiff problems): the samples come
            # from their dense output (order 4 for Rodas5P and Tsit5), so they step freely past
            # measurement times. Pre-equilibration always uses the Rosenbrock loop: the approach
            # to a steady state is stiff whatever the dynamics before it.
            method = o["solver"]
            unroll = self._unroll()
            ros = {"rtol": o["rtol"], "atol": o["atol"], "max_steps": max_steps}
            steady_method = "rodas5p" if method == "tsit5" else method
            if method == "tsit5":

                def loop_solve(fld, a, b, y, ts, args):
                    return tsit5_solve(fld, a, b, y, ts, args, unreached=jnp.nan, **ros)

            else:

                def loop_solve(fld, a, b, y, ts, args):
                    return rosenbrock_solve(
                        fld, a, b, y, ts, args, method=method, unroll=unroll, **ros
                    )

                if one_loop:
                    f_jac = self._rhs_jacobian()
                    jacobian = (
                        None
                        if f_jac is None
                        else (lambda t, y, args: f_jac(t, y, args[0], args[1]))
                    )

                    # The states and their sensitivities in one loop (`rosenbrock_sensitivities`):
                    # the same numbers as `jax.jacfwd` through `loop_solve`, with fewer and
                    # cheaper kernels per step (Boehm's FIM 1.9 -> 1.25 ms).

                    def jacobian_unit(s, y, args):
                        # The Jacobian of `field_unit`: time scaled by the interval's length.
                        pm, a, length, mid = args
                        f, ft, J = f_jac(a + s * length, y, pm, mid)
                        return length * f, length**2 * ft, length * J

                    sens = dict(
                        method=method,
                        inverse_residual=_rosenbrock.INVERSE_RESIDUAL,
                        **ros,
                    )

                    def simulate_sens(pm, dpm, y0, dy0, ts):
                        """One experiment: states and their Jacobians (nt, n, P) over the
                        directions of dpm (npm, P) and dy0 (n, P); `simulate` with the tangents
                        that `jax.jacfwd` would propagate."""
                        if not n_switch + n_events:
                            ys, Ss, _, _, status = rosenbrock_sensitivities(
                                field,
                                0.0,
                                ts[-1],
                                y0,
                                dy0.T,
                                jnp.clip(ts, 0.0, ts[-1]),
                                (pm, 0.5 * ts[-1]),
                                (dpm.T, jnp.zeros(dpm.shape[1], dtype=dpm.dtype)),
                                jacobian=jacobian,
                                **sens,
                            )
                            return ys, jnp.swapaxes(Ss, 1, 2), status
                        t0 = jnp.asarray(0.0)
                        t_end = ts[-1]

                        def intervals(pm):
                            raw = f_thr(pm)
                            edges = jnp.sort(jnp.clip(raw, t0, t_end))
                            starts = jnp.concatenate([t0[None], edges])
                            return starts, jnp.concatenate([edges, t_end[None]]), raw

                        (starts, stops, raw), (dstarts, dstops, _) = jax.vmap(
                            lambda d: jax.jvp(intervals, (pm,), (d,)), out_axes=((None,) * 3, 0)
                        )(dpm.T)
                        last = jnp.arange(starts.shape[0]) == starts.shape[0] - 1
                        event_t = raw[n_switch:]

                        def unit(a, b):
                            length = b - a
                            nonempty = length > 0
                            tc = jnp.clip(ts, a, b)
                            s_ts = jnp.where(
                                nonempty, (tc - a) / jnp.where(nonempty, length, 1.0), 0.0
                            )
                            return s_ts, length, 0.5 * (a + b)

                        def segment(carry, inp):
                            y, S, status, fired = carry
                            a, b, da, db, is_last = inp
                            (s_ts, length, mid), (ds_ts, dlength, dmid) = jax.vmap(
                                lambda u, v: jax.jvp(unit, (a, b), (u, v)),
                                out_axes=((None,) * 3, 0),
                            )(da, db)
                            saved, saved_S, y, S, seg_status = rosenbrock_sensitivities(
                                field_unit,
                                0.0,
                                jnp.where(length > 0, 1.0, 0.0),
                                y,
                                S,
                                s_ts,
                                (pm, a, length, mid),
                                (dpm.T, da, dlength, dmid),
                                dts=ds_ts,
                                jacobian=None if jacobian is None else jacobian_unit,
                                **sens,
                            )
                            status = jnp.where(status == 0, seg_status, status)
                            for j in range(n_events):
                                tj = event_t[j]
                                in_range = ((tj > t0) | fires_at_t0[j]) & (tj <= t_end)
                                fire = (jnp.maximum(tj, t0) == b) & in_range & ~fired[j] & ~is_last
                                new, dnew = jax.vmap(
                                    lambda dbk, sk, dpk, j=j, y=y: jax.jvp(
                                        f_events[j], (b, y, pm), (dbk, sk, dpk)
                                    ),
                                    out_axes=(None, 0),
                                )(db, S, dpm.T)
                                y = jnp.where(fire, new, y)
                                S = jnp.where(fire, dnew, S)
                                fired = fired.at[j].set(fired[j] | fire)
                            return (y, S, status, fired), (saved, saved_S)

                        init = (y0, dy0.T, jnp.asarray(0), jnp.zeros(n_events, dtype=bool))
                        (_, _, status, _), (saved, saved_S) = jax.lax.scan(
                            segment, init, (starts, stops, dstarts.T, dstops.T, last)
                        )
                        seg = jnp.searchsorted(starts[1:], ts, side="right")
                        idx = jnp.arange(ts.shape[0])
                        return saved[seg, idx], jnp.swapaxes(saved_S[seg, idx], 1, 2), status

            def solve_ss(pm, y0):
                y, t, status, reached = rosenbrock_steady(
                    field_ss,
                    0.0,
                    t_ss,
                    y0,
                    pm,
                    reached_steady,
                    method=steady_method,
                    unroll=unroll,
                    **ros,
                )
                return y, t, jnp.where(reached, 0, jnp.where(status == 0, 4, status))

            def field_unit(s, y, args):
                pm, a, length, mid = args
                return length * f_rhs(a + s * length, y, pm, mid)

            def solve_segment(pm, a, b, y, ts):
                if not n_switch + n_events:
                    # One interval, from 0 to the last measurement time: nothing to scale.
                    return loop_solve(field, a, b, y, ts, (pm, 0.5 * (a + b)))
                # On the unit interval s = (t - a) / (b - a): the loop's step sizes carry no
                # derivative, so the derivatives with respect to the interval's ends (switching
                # and event times that depend on parameters) come through the time scaling.
                length = b - a
                nonempty = length > 0
                s_ts = jnp.where(nonempty, (ts - a) / jnp.where(nonempty, length, 1.0), 0.0)
                return loop_solve(
                    field_unit,
                    0.0,
                    jnp.where(nonempty, 1.0, 0.0),
                    y,
                    s_ts,
                    (pm, a, length, 0.5 * (a + b)),
                )

        else:
            import diffrax

            pid = {"pcoeff": o.get("pcoeff", 0.0), "icoeff": o.get("icoeff", 1.0)}
            controller = diffrax.PIDController(rtol=o["rtol"], atol=o["atol"], **pid)
            term = diffrax.ODETerm(field)
            term_ss = diffrax.ODETerm(field_ss)

            def status_of(result):
                return jnp.where(result == diffrax.RESULTS.max_steps_reached, 1, 2)

            def solve_ss(pm, y0):
                sol = diffrax.diffeqsolve(
                    term_ss,
                    solver,
                    t0=0.0,
                    t1=t_ss,
                    dt0=None,
                    y0=y0,
                    args=pm,
                    saveat=diffrax.SaveAt(t1=True),
                    stepsize_controller=controller,
                    max_steps=max_steps,
                    event=diffrax.Event(reached_steady),
                    throw=False,
                )
                ok = sol.result == diffrax.RESULTS.event_occurred
                status = jnp.where(
                    ok,
                    0,
                    jnp.where(sol.result == diffrax.RESULTS.successful, 4, status_of(sol.result)),
                )
                return sol.ys[-1], sol.ts[-1], status

            def solve_segment(pm, a, b, y, ts):
                sol = diffrax.diffeqsolve(
                    term,
                    solver,
                    t0=a,
                    t1=b,
                    dt0=None,
                    y0=y,
                    args=(pm, 0.5 * (a + b)),
                    saveat=diffrax.SaveAt(ts=ts, t1=True),
                    # Step to every measurement time: the dense output of implicit solvers is
                    # only third order, and interpolated outputs would miss the tolerance.
                    stepsize_controller=diffrax.PIDController(
                        rtol=o["rtol"], atol=o["atol"], step_ts=ts, **pid
                    ),
                    max_steps=max_steps,
                    adjoint=diffrax.ForwardMode(),
                    throw=False,
                )
                ok = sol.result == diffrax.RESULTS.successful
                return sol.ys[:-1], sol.ys[-1], jnp.where(ok, 0, status_of(sol.result))

        def unscale(x):
            codes = jnp.asarray(scale_codes)
            return jnp.where(codes == 0, x, jnp.where(codes == 1, jnp.exp(x), 10.0**x))

        def steady_simulation(pm, y0):
            y, t, status = solve_ss(pm, y0)
            # Two Newton steps on f(y) = 0 that keep the conserved quantities make the steady
            # state exact to rounding (the simulation stops at a tolerance), so the
            # log-likelihood is a smooth function of the parameters. In a loop: the model and
            # its Jacobian are compiled once, not once per step.

            def newton(_, carry):
                y, f0, _ = carry
                J = jax.jacfwd(lambda z: f_rhs(t, z, pm, t))(y)
                y_new = y + _constrained_solve(J, -f0, jnp.zeros_like(y))
                f_new = f_rhs(t, y_new, pm, t)
                better = jnp.all(jnp.isfinite(y_new)) & (
                    jnp.linalg.norm(f_new) <= jnp.linalg.norm(f0)
                )
                return jnp.where(better, y_new, y), jnp.where(better, f_new, f0), J

            J0 = jnp.zeros((y.shape[0], y.shape[0]), dtype=y.dtype)
            y, _, J = jax.lax.fori_loop(0, 2, newton, (y, f_rhs(t, y, pm, t), J0))
            # J is the Jacobian before the last step, which moved y by a rounding-size amount
            # (the second Newton step of a converged iteration): the sensitivities use it.
            return y, t, status, J

        @jax.custom_jvp
        def steady(pm, y0):
            """The steady state reached from y0, the time it was reached, a status, and the
            Jacobian there."""
            return steady_simulation(pm, y0)

        @steady.defjvp
        def steady_jvp(primals, tangents):
            # Sensitivities of the steady state by the implicit function theorem instead of the
            # forward sensitivities at the stopping time (which converge more slowly than the
            # state the stopping rule watches): J dy = -∂f/∂p dp, and for each conservation law
            # γ (a left null vector of J: γᵀf ≡ 0), γᵀ dy = γᵀ dy0. The stacked system has full
            # column rank at an isolated steady state; it is solved by QR.
            pm, y0 = primals
            dpm, dy0 = tangents
            y, t, status, J = steady(pm, y0)
            J = jacobian_at(J, t, y, pm)
            fp = jax.jvp(lambda q: f_rhs(t, y, q, t), (pm,), (dpm,))[1]
            dy = _constrained_solve(J, -fp, dy0)
            zero_status = np.zeros(np.shape(status), dtype=jax.dtypes.float0)
            return (y, t, status, J), (dy, jnp.zeros_like(t), zero_status, jnp.zeros_like(J))

        @jax.custom_jvp
        def jacobian_at(J, t, y, pm):
            """The Jacobian J of the steady state's last Newton step, as a function of (y, pm):
            its tangent (second derivatives of the model) is traced only when the sensitivities
            themselves are differentiated (observed information), not for every FIM."""
            return J

        @jacobian_at.defjvp
        def jacobian_at_jvp(primals, tangents):
            J, t, y, pm = primals
            _, _, dy, dpm = tangents
            dJ = jax.jvp(
                lambda z, q: jax.jacfwd(lambda w: f_rhs(t, w, q, t))(z), (y, pm), (dy, dpm)
            )[1]
            return J, dJ

        def simulate(pm, y0, ts):
            # The intervals between switching times are solved by one diffeqsolve inside a scan,
            # so a model with many switching times or events compiles the solver once.
            t0 = jnp.asarray(0.0)
            t_end = ts[-1]
            raw = f_thr(pm)
            edges = jnp.sort(jnp.clip(raw, t0, t_end))
            starts = jnp.concatenate([t0[None], edges])
            stops = jnp.concatenate([edges, t_end[None]])
            last = jnp.arange(starts.shape[0]) == starts.shape[0] - 1
            event_t = raw[n_switch:]

            def segment(carry, inp):
                y, status, fired = carry
                a, b, is_last = inp
                saved, y, seg_status = solve_segment(pm, a, b, y, jnp.clip(ts, a, b))
                status = jnp.where(status == 0, seg_status, status)
                # Events whose time is this interval's end fire, with the values just before.
                for j in range(n_events):
                    tj = event_t[j]
                    in_range = ((tj > t0) | fires_at_t0[j]) & (tj <= t_end)
                    fire = (jnp.maximum(tj, t0) == b) & in_range & ~fired[j] & ~is_last
                    y = jnp.where(fire, f_events[j](b, y, pm), y)
                    fired = fired.at[j].set(fired[j] | fire)
                return (y, status, fired), saved

            init = (y0, jnp.asarray(0), jnp.zeros(n_events, dtype=bool))
            (_, status, _), saved = jax.lax.scan(segment, init, (starts, stops, last))
            seg = jnp.searchsorted(edges, ts, side="right")
            states = saved[seg, jnp.arange(ts.shape[0])]
            return states, status

        P_sim = jnp.asarray(self._P_sim)
        O_sim_mask = jnp.asarray(self._O_sim_mask)
        O_sim_src = jnp.asarray(self._O_sim_src)
        pre_of = jnp.asarray(self._pre_of)
        has_pre = bool(self._preeqs)
        if has_pre:
            P_pre = jnp.asarray(self._P_pre)
            O_pre_mask = jnp.asarray(self._O_pre_mask)
            O_pre_src = jnp.asarray(self._O_pre_src)
        exp_of = jnp.asarray(self._exp_of)
        has_post = bool(self._steady_meas.any())
        steady_meas = jnp.asarray(self._steady_meas)
        time_index = jnp.asarray(self._time_index)
        PO, PN = jnp.asarray(self._PO), jnp.asarray(self._PN)
        obs_rows = {k: jnp.asarray(v) for k, v in self._obs_rows.items() if v.size}
        f_obs = self._f_obs
        n_meas = self._y.size

        batching = o["batch"]
        if batching == "auto":
            batching = "map" if len(self.experiments) <= MAP_EXPERIMENTS else "vmap"

        def batch(fn, *args):
            # One experiment: no batching at all (cheaper to trace). Several: vmap solves them in
            # lockstep (one vectorised solve), lax.map one after the other (traced once, no
            # batching rules: faster to compile, slower to run when conditions are many).
            if args[0].shape[0] == 1:
                return jax.tree_util.tree_map(lambda a: a[None], fn(*(a[0] for a in args)))
            if batching == "map":
                return jax.lax.map(lambda a: fn(*a), args)
            return jax.vmap(fn)(*args)

        def preequilibrate(x):
            """x → (steady state, status) of each pre-equilibration condition."""
            v = jnp.concatenate([unscale(x), fixed])
            pq = v[P_pre]
            yq = jax.vmap(f_init)(pq)
            yq = jnp.where(O_pre_mask, v[O_pre_src], yq)
            yss, _, sq, _ = batch(steady, pq, yq)
            return yss, sq

        def simulate_all(x, pre=None):
            """x → (states at the measurement times, post-equilibrium states or None, statuses,
            pre-equilibration statuses, first failing time index per experiment).

            `pre(x)`, when given, stands for `preequilibrate` (the split programs of
            `_program` compute the steady states in a program of their own)."""
            pm, y0, pre_status = initial_states(x, pre)
            states, status = batch(simulate, pm, y0, T)
            y_post = None
            if has_post:
                y_post, _, post_status, _ = batch(steady, pm, states[:, -1])
                status = jnp.where(status == 0, jnp.where(post_status == 0, 0, 5), status)
            return states, y_post, status, pre_status, first_failure(states)

        def initial_states(x, pre=None):
            """x → (model parameters, initial states, pre-equilibration statuses) of each
            experiment (`pre` as in `simulate_all`)."""
            v = jnp.concatenate([unscale(x), fixed])
            pm = v[P_sim]
            y0 = jax.vmap(f_init)(pm)
            y0 = jnp.where(O_sim_mask, v[O_sim_src], y0)
            pre_status = jnp.zeros(pm.shape[0], dtype=jnp.int32)
            if has_pre:
                yss, sq = (pre or preequilibrate)(x)
                idx = jnp.maximum(pre_of, 0)
                from_pre = jnp.where(O_sim_mask, v[O_sim_src], yss[idx])
                y0 = jnp.where((pre_of >= 0)[:, None], from_pre, y0)
                pre_status = jnp.where(pre_of >= 0, sq[idx], 0)
            return pm, y0, pre_status

        def first_failure(states):
            """The first measurement time index with a non-finite state, −1 without one."""
            finite = jnp.all(jnp.isfinite(states), axis=-1)
            first_bad = jnp.argmin(finite, axis=-1)
            return jnp.where(jnp.all(finite, axis=-1), -1, first_bad)

        def sensitivities_all(x, dynamic, pre=None):
            """`simulate_all` with the Jacobian of the states over x[dynamic] (the last axis), or
            None where the states and their sensitivities are not computed in one loop (see
            `_one_loop`)."""
            if simulate_sens is None:
                return None
            x = jnp.asarray(x)

            def setup(xd):
                pm, y0, pre_status = initial_states(x.at[dynamic].set(xd), pre)
                return (pm, y0), (pm, y0, pre_status)

            (dpm, dy0), (pm, y0, pre_status) = jax.jacfwd(setup, has_aux=True)(x[dynamic])
            states, S, status = batch(simulate_sens, pm, dpm, y0, dy0, T)
            return states, S, None, None, status, pre_status, first_failure(states)

        def observe_all(x, states, y_post):
            """(x, simulated states) → (observables h, noise σ), one per measurement."""
            v = jnp.concatenate([unscale(x), fixed])
            pm = v[P_sim]
            h = jnp.zeros(n_meas)
            sigma = jnp.ones(n_meas)
            for oid, rows in obs_rows.items():
                e = exp_of[rows]
                ti = time_index[rows]
                t_m, y_m = T[e, ti], states[e, ti]
                if has_post:
                    at_inf = steady_meas[rows]
                    t_m = jnp.where(at_inf, jnp.inf, t_m)
                    y_m = jnp.where(at_inf[:, None], y_post[e], y_m)
                out = jax.vmap(f_obs[oid], in_axes=(0, 0, 0, None, 0, 0))(
                    t_m, y_m, pm[e], v, v[PO[rows]], v[PN[rows]]
                )
                h = h.at[rows].set(out[:, 0])
                sigma = sigma.at[rows].set(out[:, 1])
            return h, sigma

        def predict(x, pre=None):
            states, y_post, status, pre_status, first_bad = simulate_all(x, pre)
            h, sigma = observe_all(x, states, y_post)
            return h, sigma, status, pre_status, first_bad

        return (
            predict,
            simulate_all,
            observe_all,
            (preequilibrate if has_pre else None),
            sensitivities_all,
        )

    def _loglike_terms(self):
        """Per-measurement log-likelihood as a function of (location, σ), and the weights."""
        trans = []
        dist = []
        for oid in self.measurements["observableId"].astype(str):
            ob = self._observables[oid]
            trans.append(TRANSFORMATIONS.index(ob.transformation))
            dist.append(DISTRIBUTIONS.index(ob.distribution))
        trans = jnp.asarray(np.asarray(trans, dtype=np.int32))
        dist = jnp.asarray(np.asarray(dist, dtype=np.int32))

        def location(h):
            safe = jnp.where(trans == 0, 1.0, h)
            return jnp.where(trans == 0, h, jnp.where(trans == 1, jnp.log(safe), jnp.log10(safe)))

        def logpdf(y, loc, sigma):
            """Log-density of measurements y given the location (transformed observable)."""
            safe_y = jnp.where(trans == 0, 1.0, y)
            jac = jnp.where(
                trans == 0,
                0.0,
                jnp.where(trans == 1, jnp.log(safe_y), jnp.log(safe_y * jnp.log(10.0))),
            )
            r = location(y) - loc
            normal = -0.5 * jnp.log(2 * jnp.pi * sigma**2) - 0.5 * (r / sigma) ** 2
            laplace = -jnp.log(2 * sigma) - jnp.abs(r) / sigma
            return jnp.where(dist == 0, normal, laplace) - jac

        def weights(sigma):
            # Fisher information per measurement about (location, σ): normal 1/σ², 2/σ²;
            # laplace 1/b², 1/b².
            w_loc = 1.0 / sigma**2
            w_sig = jnp.where(dist == 0, 2.0, 1.0) / sigma**2
            return w_loc, w_sig

        return location, logpdf, weights

    def _program(self, kind: str):
        """The compiled program of `kind` ("value", "first" or "second"): (x, y) → outputs.

        "first" computes the sensitivities in one Rosenbrock loop where `_one_loop` says so;
        "first-ad" is the same program with `jax.jacfwd` through the solver (see `_first`)."""
        if kind in self._programs:
            return self._programs[kind]
        from .._jax import TwoPrograms, jit
        from ..prediction import _cacheable

        requested = kind
        one_loop = kind == "first" and self._one_loop()
        kind = "first" if kind == "first-ad" else kind
        predict, simulate_all, observe_all, preequilibrate, sensitivities_all = self._predict_fn(
            one_loop
        )
        location, logpdf, weights = self._loglike_terms()
        dynamic = self._dynamic_parameters()
        # With pre-equilibration, the steady states (and, for "first", their sensitivities) come
        # from a program of their own, compiled on another thread while the rest is traced and
        # compiled: Zheng's first FIM 7.8 -> 6.8 s (see `fimkit._jax.TwoPrograms`). The observed
        # information needs second derivatives through both and stays one program.
        split = preequilibrate is not None and kind != "second" and SPLIT_PREEQUILIBRATION

        if kind == "value":

            def run(x, y, pre=None):
                h, sigma, status, pre_status, bad = predict(x, pre)
                ll = jnp.sum(logpdf(y, location(h), sigma))
                return ll, h, sigma, status, pre_status, bad

            def stage_one(x):
                yss, sq = preequilibrate(x)
                return yss, sq.astype(jnp.int32)

            def stage_two(x, y, yss, sq):
                return run(x, y, lambda _: (yss, sq))

        elif kind == "first":

            def sensitivities(x, pre):
                """Jacobian of (location, σ) over x, and the outputs and statuses."""
                explicit = sensitivities_all(x, dynamic, pre) if dynamic.size else None
                if explicit is None and dynamic.size == x.shape[0]:

                    def f(x):
                        h, sigma, status, pre_status, bad = predict(x, pre)
                        return jnp.concatenate([location(h), sigma]), (
                            h,
                            sigma,
                            status,
                            pre_status,
                            bad,
                        )

                    return jax.jacfwd(f, has_aux=True)(x)
                # Only the parameters that reach the dynamics (rates, initial values, event
                # times) are propagated through the solver; observable, scaling and noise
                # parameters enter (h, σ) directly. The states are linear in x around x with
                # the solver's Jacobian: equal values, exact first derivatives. (The states and
                # their sensitivities from one Rosenbrock loop enter the same way, all parameters
                # dynamic or not.)
                if explicit is not None:
                    states, S, y_post, S_post, status, pre_status, bad = explicit
                elif dynamic.size:
                    xd = x[dynamic]

                    def sim(xd):
                        states, y_post, *rest = simulate_all(x.at[dynamic].set(xd), pre)
                        return (states, y_post), (states, y_post, *rest)

                    (S, S_post), (states, y_post, status, pre_status, bad) = jax.jacfwd(
                        sim, has_aux=True
                    )(xd)
                else:  # nothing estimated reaches the dynamics
                    states, y_post, status, pre_status, bad = simulate_all(x, pre)
                    S = jnp.zeros((*states.shape, 0))
                    S_post = None if y_post is None else jnp.zeros((*y_post.shape, 0))

                def f(xi):
                    dx = xi[dynamic] - x[dynamic]  # zero, with derivative one along xi
                    st = states + S @ dx
                    yp = None if y_post is None else y_post + S_post @ dx
                    h, sigma = observe_all(xi, st, yp)
                    return jnp.concatenate([location(h), sigma]), (h, sigma)

                J, (h, sigma) = jax.jacfwd(f, has_aux=True)(x)
                return J, (h, sigma, status, pre_status, bad)

            def run(x, y, pre=None):
                J, (h, sigma, status, pre_status, bad) = sensitivities(x, pre)
                n = h.shape[0]
                Jl, Js = J[:n], J[n:]
                loc = location(h)
                ll = logpdf(y, loc, sigma)
                dl = jax.grad(lambda a, b: jnp.sum(logpdf(y, a, b)), argnums=(0, 1))(loc, sigma)
                grad = Jl.T @ dl[0] + Js.T @ dl[1]
                w_loc, w_sig = weights(sigma)
                fim = Jl.T @ (Jl * w_loc[:, None]) + Js.T @ (Js * w_sig[:, None])
                return jnp.sum(ll), grad, fim, h, sigma, Jl, Js, status, pre_status, bad

            def stage_one(x):
                """The steady states, their statuses and their Jacobian over the dynamic
                parameters."""
                if not dynamic.size:
                    yss, sq = preequilibrate(x)
                    return yss, sq.astype(jnp.int32), jnp.zeros((*yss.shape, 0))

                def f(xd):
                    yss, sq = preequilibrate(x.at[dynamic].set(xd))
                    return yss, (yss, sq)

                S, (yss, sq) = jax.jacfwd(f, has_aux=True)(x[dynamic])
                return yss, sq.astype(jnp.int32), S

            def stage_two(x, y, yss, sq, S):
                def pre(xi):
                    # Linear in x around x: the steady states, with exact first derivatives.
                    return yss + S @ (xi[dynamic] - x[dynamic]), sq

                return run(x, y, pre)

        elif kind == "second":

            def run(x, y):
                def ll(x):
                    h, sigma, status, pre_status, bad = predict(x)
                    return jnp.sum(logpdf(y, location(h), sigma)), (status, pre_status, bad)

                def grad(x):
                    g, aux = jax.jacfwd(ll, has_aux=True)(x)
                    return g, aux

                H, aux = jax.jacfwd(grad, has_aux=True)(x)
                return H, *aux

        else:  # pragma: no cover
            raise ValueError(kind)
        if split:
            n_pre, n_y = self._P_pre.shape[0], len(self.system.states)
            middle = [
                jax.ShapeDtypeStruct((n_pre, n_y), jnp.float64),
                jax.ShapeDtypeStruct((n_pre,), jnp.int32),
            ]
            if kind == "first":
                middle.append(jax.ShapeDtypeStruct((n_pre, n_y, dynamic.size), jnp.float64))
            program = TwoPrograms(jit(stage_one), jit(stage_two), middle, _cacheable)
        else:
            program = _cacheable(jit(run))
        self._programs[requested] = program
        if requested == "first" and not one_loop:
            self._programs["first-ad"] = program  # the same program
        return program

    def _check_status(self, x: np.ndarray, status, pre_status, bad) -> None:
        status, pre_status, bad = (np.asarray(a) for a in (status, pre_status, bad))
        problems = []
        for e, (pre, sim) in enumerate(self.experiments):
            if pre_status[e] != 0:
                problems.append(
                    f"pre-equilibration of condition {pre!r} (for {sim!r}) did not reach a steady "
                    f"state: {_STATUS_TEXT.get(int(pre_status[e]), 'solver failure')}"
                )
            elif status[e] != 0 or bad[e] >= 0:
                ts = self._T[e]
                i = int(bad[e])
                if i < 0:
                    where = f"after t={ts[-1]:g}"
                elif i == 0:
                    where = f"before t={ts[0]:g}"
                else:
                    where = f"between t={ts[i - 1]:g} and t={ts[i]:g}"
                what = _STATUS_TEXT.get(int(status[e]), "")
                if status[e] == 0:
                    what = "the states became NaN or infinite"
                label = f"condition {sim!r}" + (f" (pre-equilibrated in {pre!r})" if pre else "")
                problems.append(f"simulating {label} failed {where}: {what}")
        if problems:
            opts = {k: v for k, v in self.solver_options.items()}
            raise SolverError(
                f"PEtab problem {self.name!r}: " + "; ".join(problems) + f". Solver options: {opts}"
                f"; parameters (PEtab scales): {dict(zip(self.names, np.round(x, 6).tolist(), strict=True))}. "
                "Try another solver (solver='kvaerno5' or 'rodas5p'), tighter or looser "
                "tolerances (rtol=, atol=), or more max_steps= in load_petab."
            )

    # -- public evaluations ------------------------------------------------------------------------
    def simulate(self, x: Any = None):
        """The measurement table with columns ``simulation`` (the observable, untransformed) and
        ``sigma`` (the noise formula's value) at `x` (default: nominal)."""
        _, (_, h, sigma, *_) = self._value(x, None)
        df = self.measurements.copy()
        df["simulation"] = np.asarray(h)
        df["sigma"] = np.asarray(sigma)
        return df

    def _data(self, measurements: Any) -> np.ndarray:
        y = self._y if measurements is None else np.asarray(measurements, dtype=np.float64)
        if y.shape != self._y.shape:
            raise FimkitError(
                f"The 'measurements' argument must have {self._y.size} values (one per row of the "
                f"measurement table). Got shape {y.shape}."
            )
        return y

    def _value(self, x: Any, measurements: Any):
        arr = self._x(x)
        out = self._program("value")(arr, self._data(measurements))
        self._check_status(arr, *out[-3:])
        return arr, out

    def _first(self, x: Any, measurements: Any = None):
        arr = self._x(x)
        y = self._data(measurements)
        out = self._program("first")(arr, y)
        status, pre_status, bad = (np.asarray(a) for a in out[-3:])
        failed = bool(status.any() or pre_status.any() or (bad >= 0).any())
        if failed and self._one_loop():
            # The one-loop sensitivities invert by elimination without pivoting and reject
            # steps where that is inaccurate; a solve that failed is repeated by jax.jacfwd
            # through the solver with LAPACK's inverse (compiled when first needed), whose
            # statuses are the ones reported.
            out = self._program("first-ad")(arr, y)
        self._check_status(arr, *out[-3:])
        return arr, out

    def loglike(self, x: Any = None, *, measurements: Any = None) -> float:
        """The log-likelihood at `x` (estimated parameters on their PEtab scales; default nominal).

        `measurements` replaces the measured values (one per row of the measurement table)."""
        _, out = self._value(x, measurements)
        return float(out[0])

    def loglike_and_gradient(
        self, x: Any = None, *, measurements: Any = None
    ) -> tuple[float, np.ndarray]:
        """The log-likelihood and its gradient from one forward-sensitivity solve."""
        _, out = self._first(x, measurements)
        return float(out[0]), np.asarray(out[1])

    def gradient(self, x: Any = None, *, measurements: Any = None) -> np.ndarray:
        """The gradient of the log-likelihood with respect to x (on the PEtab scales)."""
        _, out = self._first(x, measurements)
        return np.asarray(out[1])

    def sensitivities(self, x: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """∂(transformed observable)/∂x and ∂σ/∂x, one row per measurement."""
        _, out = self._first(x)
        return np.asarray(out[5]), np.asarray(out[6])

    def information_per_measurement(self, x: Any = None) -> np.ndarray:
        """The expected information of each row of the measurement table about x (on the PEtab
        scales), shape (n_measurements, p, p): the terms that `fisher_information` sums.

        Independent measurements add their information, so this is what a design needs: the
        information of any subset of rows is the sum of their terms."""
        return self._row_information(x)[0]

    def _row_information(self, x: Any = None):
        """(per-row information (n, p, p), simulated observables, σ) from one sensitivity solve."""
        _, out = self._first(x)
        h, sigma, Jl, Js = (np.asarray(out[i]) for i in (3, 4, 5, 6))
        dist = np.array(
            [
                self._observables[o].distribution
                for o in self.measurements["observableId"].astype(str)
            ]
        )
        # As in the "first" program: normal 1/σ², 2/σ²; Laplace 1/b², 1/b².
        w_loc = 1.0 / sigma**2
        w_sig = np.where(dist == "normal", 2.0, 1.0) / sigma**2
        E = w_loc[:, None, None] * (Jl[:, :, None] * Jl[:, None, :]) + w_sig[:, None, None] * (
            Js[:, :, None] * Js[:, None, :]
        )
        return E, h, sigma

    def fisher_information(self, x: Any = None, *, scale: str = "petab") -> FisherInformation:
        """The expected Fisher information about the estimated parameters at `x`.

        For each measurement with location μ (the transformed observable) and noise σ, the
        information is ∂μᵀ∂μ/σ² + 2 ∂σᵀ∂σ/σ² (normal) or (∂μᵀ∂μ + ∂σᵀ∂σ)/b² (Laplace): exact, also
        for noise parameters, where the Gauss–Newton sum of residual sensitivities gives only half.

        **Arguments:**
        - `x`: the estimated parameters on their PEtab scales (default: nominal).
        - `scale`: ``"petab"`` (default): about x itself; names are ``"log10(k)"`` etc. and the
          result's `scale` is ``"lin"`` in those coordinates. ``"log"``: about the natural
          logarithms of the parameters (all must be positive), a `FisherInformation` with
          ``scale="log"`` and the linear-scale values as `theta`, like `fimkit.fisher_information`.
          ``"lin"``: about the parameters themselves.
        """
        arr, out = self._first(x)
        return self._result(np.asarray(out[2]), arr, scale, "expected (closed form)")

    def observed_information(self, x: Any = None, *, scale: str = "petab") -> FisherInformation:
        """Minus the Hessian of the log-likelihood at `x` (forward over forward mode)."""
        arr = self._x(x)
        H, status, pre_status, bad = self._program("second")(arr, self._y)
        self._check_status(arr, status, pre_status, bad)
        return self._result(-np.asarray(H), arr, scale, "observed (−Hessian)")

    def _coordinates(self, x: np.ndarray, scale: str):
        """(d, names, θ, FisherInformation scale) of the information on `scale`: the information
        about x transforms by D I D with D = diag(d)."""
        if scale not in ("petab", "lin", "log"):
            raise FimkitError(
                f"The 'scale' argument must be 'petab', 'lin' or 'log'. Got {describe(scale)}."
            )
        if scale == "petab":
            return np.ones(len(self.names)), self.names, np.asarray(x, dtype=np.float64), "lin"
        lin = np.array([_from_scale(v, s) for v, s in zip(x, self.scales, strict=True)])
        # dx/dθ (lin) or dx/dlog θ (log) per parameter.
        if scale == "lin":
            d = np.array([_dscale_dlin(t, s) for t, s in zip(lin, self.scales, strict=True)])
        else:
            if np.any(lin <= 0):
                raise FimkitError(
                    "The information about log parameters needs positive parameters. Got "
                    f"{dict(zip(self.parameter_ids, lin.tolist(), strict=True))}."
                )
            d = np.array([_dscale_dlin(t, s) * t for t, s in zip(lin, self.scales, strict=True)])
        return d, self.parameter_ids, lin, scale

    def _provenance(self, method: str) -> dict[str, Any]:
        from .. import __version__
        from .ode import _is_diffrax_solver

        return {
            "model": self.name,
            "model_type": "PetabProblem",
            "method": method,
            "parameter_scales": dict(zip(self.parameter_ids, self.scales, strict=True)),
            "fimkit": __version__,
            **{k: v for k, v in self.solver_options.items() if not _is_diffrax_solver(v)},
        }

    def _result(
        self, matrix: np.ndarray, x: np.ndarray, scale: str, method: str
    ) -> FisherInformation:
        d, names, theta, fim_scale = self._coordinates(x, scale)
        provenance = self._provenance(method)
        if scale == "petab":
            provenance["coordinates"] = "PEtab scales (theta holds the scaled values)"
        return FisherInformation(matrix * np.outer(d, d), names, theta, fim_scale, provenance)

    # -- designs and fitting -----------------------------------------------------------------------
    def with_measurements(self, measurements: Any) -> PetabProblem:
        """The same problem with another measurement table (a pandas DataFrame in PEtab format):
        new sampling times, observables or conditions of the same model. Checked like a loaded
        problem; compiles anew on first use. Use it to compare candidate designs by their
        Fisher information (the measured values only enter the log-likelihood, not the expected
        information)."""
        _pandas()
        tables = self._tables
        try:
            meas = read_measurement_table(measurements)
        except (ValueError, TypeError) as exc:
            raise PetabError(
                "The 'measurements' argument must be a PEtab measurement table (a pandas "
                f"DataFrame or a file name). Got {describe(measurements)}: {exc}"
            ) from None
        new = _Tables(
            tables.root,
            tables.name,
            tables.sbml_path,
            tables.conditions,
            meas,
            tables.observables,
            tables.parameters,
        )
        issues, system, observables = _check(new, system=self.system)
        errors = [i for i in issues if i.level == "error"]
        if errors:
            text = "\n".join(f"  - {i.message}" for i in errors)
            raise PetabError(
                f"The new measurement table has {len(errors)} error(s):\n{text}", issues
            )
        return PetabProblem(new, system, observables, issues, self.solver_options)

    def fit(
        self,
        x0: Any = None,
        *,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        n_starts: int = 1,
        seed: int = 0,
        max_iter: int = 200,
        tol: float = 1e-9,
    ) -> PetabFit:
        """Maximum-likelihood estimate of x within the parameter table's bounds.

        Fisher scoring with Levenberg–Marquardt damping: each step solves
        (I + λ diag I) dx = ∇ℓ over the parameters not held at a bound (I the expected
        information, exact gradient), projects onto the bounds, and is kept if the
        log-likelihood rises. It stops when the Newton decrement ∇ℓᵀ I⁻¹ ∇ℓ (the improvement one
        more full step promises) is below `tol`. The first start is `x0` (default: the nominal
        values, clipped into the bounds); further starts are drawn uniformly within the bounds
        on the parameters' scales, with `seed`.

        `bounds` replaces the parameter table's bounds of some parameters: ``{id: (lower,
        upper)}`` on the linear scale (as `fimkit.fit` takes them), keyed by parameter id or by
        name (``"log10(k1)"``). `fimkit.fit(problem, ...)` calls this method.

        **Returns:** a `PetabFit`; `starts` lists every start's (log-likelihood, converged).
        """
        if isinstance(n_starts, bool) or not isinstance(n_starts, int) or n_starts < 1:
            raise FimkitError(
                f"The 'n_starts' argument must be an integer >= 1. Got {describe(n_starts)}."
            )
        lo, hi = self._bounds(bounds)
        first = self._x(x0)
        first = np.clip(np.where(np.isfinite(first), first, lo), lo, hi)
        rng = np.random.default_rng(seed)
        starts = [first] + [rng.uniform(lo, hi) for _ in range(n_starts - 1)]
        records = [self._scoring(x, lo, hi, max_iter, tol) for x in starts]
        order = sorted(range(len(records)), key=lambda i: -records[i][1])
        x, ll, ok, message, n_it = records[order[0]]
        return PetabFit(
            problem=self,
            x=x,
            loglike=ll,
            success=ok,
            message=message,
            n_iterations=n_it,
            starts=tuple((records[i][1], records[i][2]) for i in order),
        )

    def _bounds(self, bounds: Any) -> tuple[np.ndarray, np.ndarray]:
        """The bounds on the PEtab scales, the parameter table's replaced by `bounds`."""
        lo, hi = self.lower_bounds.copy(), self.upper_bounds.copy()
        if bounds is None:
            return lo, hi
        if not isinstance(bounds, Mapping):
            raise FimkitError(
                "The 'bounds' argument must be a dict {parameter id: (lower, upper)} on the linear "
                f"scale. Got {describe(bounds)}."
            )
        for k, b in bounds.items():
            if k in self.parameter_ids:
                i = self.parameter_ids.index(k)
            elif k in self.names:
                i = self.names.index(k)
            else:
                raise FimkitError(
                    f"The 'bounds' argument names {k!r}, which is not an estimated parameter of "
                    f"{self.name!r}; they are {list(self.parameter_ids)}."
                )
            try:
                low, high = (float(v) for v in b)
            except (TypeError, ValueError) as exc:
                raise FimkitError(
                    f"The bounds of {k!r} must be a pair (lower, upper). Got {describe(b)}."
                ) from exc
            s = self.scales[i]
            if not low < high or (s != "lin" and low <= 0):
                raise FimkitError(
                    f"The bounds of {k!r} must have lower < upper"
                    + ("" if s == "lin" else f" and lower > 0 (its scale is {s})")
                    + f". Got ({low}, {high})."
                )
            lo[i], hi[i] = _to_scale(low, s), _to_scale(high, s)
        return lo, hi

    def _scoring(self, x, lo, hi, max_iter, tol):
        def first(x):
            try:
                _, out = self._first(x)
            except SolverError:
                return -np.inf, None, None
            return float(out[0]), np.asarray(out[1]), np.asarray(out[2])

        def value(x):
            try:
                return self.loglike(x)
            except SolverError:
                return -np.inf

        ll, g, F = first(x)
        if not np.isfinite(ll):
            return x, -np.inf, False, "the start cannot be simulated", 0
        lam = 1e-3
        for it in range(1, max_iter + 1):
            # Parameters at a bound whose gradient points outwards stay there.
            free = ~(((x <= lo) & (g < 0)) | ((x >= hi) & (g > 0)))
            Ff, gf = F[np.ix_(free, free)], g[free]
            decrement = float(gf @ np.linalg.lstsq(Ff, gf, rcond=None)[0])
            if decrement < tol:
                return x, ll, True, f"converged (Newton decrement {decrement:.2g})", it - 1
            while True:
                A = Ff + lam * np.diag(np.diag(Ff) + 1e-12 * np.trace(Ff) / Ff.shape[0])
                dx = np.zeros_like(x)
                dx[free] = np.linalg.solve(A, gf)
                x_new = np.clip(x + dx, lo, hi)
                ll_new = value(x_new)
                if ll_new > ll:
                    lam = max(lam / 10, 1e-10)
                    break
                lam *= 10
                if lam > 1e10:
                    return x, ll, False, "no step improves the log-likelihood", it
            x = x_new
            ll, g, F = first(x)
        return x, ll, False, f"max_iter={max_iter} reached", max_iter

    def __repr__(self) -> str:
        return (
            f"PetabProblem({self.name!r}, {len(self.names)} estimated parameters, "
            f"{len(self.experiments)} experiment(s), {self._y.size} measurements, "
            f"{len(self.system.states)} states)"
        )


def _constrained_solve(J, b, d0):
    """The solution dy of J dy = b with γᵀ dy = γᵀ d0 for every left null vector γ of J
    (the conservation laws), by QR of the stacked system."""
    u, sv, _ = jnp.linalg.svd(jax.lax.stop_gradient(J))
    null = sv <= CONSERVATION_RTOL * jnp.max(sv)
    G = jax.lax.stop_gradient((u * null[None, :]).T)
    q, r = jnp.linalg.qr(jnp.concatenate([J, G]))
    return jax.scipy.linalg.solve_triangular(r, q.T @ jnp.concatenate([b, G @ d0]))


@dataclass(frozen=True, eq=False)
class PetabFit:
    """The result of `PetabProblem.fit`: `x` (PEtab scales), `loglike`, `success`, `message`,
    `n_iterations`, and the (log-likelihood, converged) of every start, best first."""

    problem: PetabProblem
    x: np.ndarray
    loglike: float
    success: bool
    message: str
    n_iterations: int
    starts: tuple[tuple[float, bool], ...]

    @property
    def params(self) -> dict[str, float]:
        """The estimate on the linear scale, keyed by parameter id."""
        return self.problem.unscale(self.x)

    def fisher_information(self, scale: str = "petab") -> FisherInformation:
        """The expected information at the estimate."""
        return self.problem.fisher_information(self.x, scale=scale)

    def observed_information(self, scale: str = "petab") -> FisherInformation:
        """The observed information at the estimate."""
        return self.problem.observed_information(self.x, scale=scale)

    def fim(self, kind: str = "expected") -> FisherInformation:
        """The information at the estimate on the PEtab scales: ``"expected"`` or ``"observed"``
        (the call shape of `FitResult.fim`)."""
        if kind == "expected":
            return self.fisher_information()
        if kind == "observed":
            return self.observed_information()
        raise FimkitError(
            f"The 'kind' argument must be 'expected' or 'observed'. Got {describe(kind)}."
        )

    def cov(self, kind: str = "expected") -> np.ndarray:
        """The asymptotic covariance of `x` (on the PEtab scales): the inverse information."""
        return self.fim(kind).cov()

    def conf_int(self, alpha: float = 0.05, kind: str = "expected"):
        """Wald intervals for `x` on the PEtab scales (log10 k ± z·se for a log10 parameter)."""
        from ..inference.intervals import wald_intervals

        return wald_intervals(self.fim(kind), alpha=alpha)

    def summary(self, alpha: float = 0.05):
        """A table: estimates on the PEtab scales with standard errors and Wald intervals."""
        from ..errors import SingularFIMError
        from ..report.tables import Table, fmt

        names = self.problem.names
        notes = [
            f"log-likelihood {self.loglike:.6g}; converged: {self.success} ({self.message}); "
            f"{self.n_iterations} iterations; {len(self.starts)} start(s)"
        ]
        try:
            ci = self.conf_int(alpha)
            rows = tuple(
                (n, fmt(self.x[j]), fmt(ci.se[j]), fmt(ci.lower[j]), fmt(ci.upper[j]))
                for j, n in enumerate(names)
            )
        except SingularFIMError as exc:
            notes.append(str(exc))
            rows = tuple((n, fmt(self.x[j]), "-", "-", "-") for j, n in enumerate(names))
        level = f"{100 * (1 - alpha):g}%"
        return Table(
            "Maximum-likelihood fit (PEtab scales)",
            ("parameter", "estimate", "SE", f"{level} lower", f"{level} upper"),
            rows,
            tuple(notes),
        )


_STATUS_TEXT = {
    1: "the solver reached max_steps",
    2: "the solver failed (step size collapsed or the implicit solve diverged)",
    3: "non-finite states",
    4: "no steady state before steady_state_max_time",
    5: "no steady state after the last finite time (for the measurements at time inf)",
}


def _to_scale(v: float, scale: str) -> float:
    if scale == "lin":
        return v
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.log(v)) if scale == "log" else float(np.log10(v))


def _from_scale(v: float, scale: str) -> float:
    if scale == "lin":
        return float(v)
    return float(np.exp(v)) if scale == "log" else float(10.0**v)


def _dscale_dlin(theta: float, scale: str) -> float:
    """d(scaled value)/dθ."""
    if scale == "lin":
        return 1.0
    return 1.0 / theta if scale == "log" else 1.0 / (theta * np.log(10.0))


def load_petab(
    yaml_path: str | os.PathLike,
    *,
    solver: Any = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int | None = None,
    steady_state_rtol: float | None = None,
    steady_state_atol: float | None = None,
    batch: str | None = None,
    unroll: bool | str | None = None,
) -> PetabProblem:
    """Load a PEtab (version 1) problem.

    **Arguments:**
    - `yaml_path`: the problem's YAML file.
    - `solver`: ``"kvaerno5"`` (default; implicit, diffrax, for the stiff models of systems
      biology), ``"rodas5p"`` or ``"rodas4"`` (linearly implicit Rosenbrock methods in fimkit's
      own loop: no Newton iterations, dense output of order 4 (Rodas5P) instead of stepping to
      every measurement time; the presets of the four benchmark problems in `SOLVER_PRESETS`),
      ``"tsit5"`` (explicit, fimkit's own loop as in `ODEModel`, for problems that are not
      stiff; pre-equilibration still uses Rodas5P), ``"kvaerno3"``, ``"dopri5"``, ``"dopri8"``
      (diffrax), or a diffrax solver.
    - `rtol`, `atol`: solver tolerances (default 1e-8 both, as in AMICI's benchmark tests).
    - `max_steps`: the most steps of one solve (default 100 000).
    - `steady_state_rtol`, `steady_state_atol`: the pre-equilibration stops when the weighted RMS
      norm of dy/dt with weights 1/(atol + rtol·|y|) is below 1 (defaults 1e-10 and 1e-12); two
      Newton steps that keep the conserved quantities then make the steady state exact.
    - `batch`: how experiments (condition pairs) are solved: ``"map"`` one after the other,
      ``"vmap"`` in lockstep, ``"auto"`` (default) map up to 16 experiments, vmap beyond.
    - `unroll`: Rosenbrock solvers only: trace the stages one by one (True: faster to run) or one
      stage in a loop (False: the model compiled once per step instead of once per stage, faster
      to compile); ``"auto"`` (default) unrolls up to `UNROLL_MAX_STATES` (10) states.

    Defaults come from `SOLVER_PRESETS` for the benchmark problems that need other settings.

    **Returns:** a `PetabProblem`. Raises `PetabError` listing every error `lint_petab` found;
    warnings are issued as `PetabWarning` and kept in `problem.issues`.
    """
    tables = _read_tables(yaml_path)
    issues, system, observables = _check(tables)
    errors = [i for i in issues if i.level == "error"]
    if errors:
        text = "\n".join(f"  - {i.message}" for i in errors)
        raise PetabError(
            f"The PEtab problem {str(yaml_path)!r} has {len(errors)} error(s):\n{text}", issues
        )
    for i in issues:
        warnings.warn(f"PEtab problem {tables.name!r}: {i.message}", PetabWarning, stacklevel=2)
    options = {**DEFAULT_SOLVER, **SOLVER_PRESETS.get(tables.name, {})}
    for k, v in (
        ("solver", solver),
        ("rtol", rtol),
        ("atol", atol),
        ("max_steps", max_steps),
        ("steady_state_rtol", steady_state_rtol),
        ("steady_state_atol", steady_state_atol),
        ("batch", batch),
        ("unroll", unroll),
    ):
        if v is not None:
            options[k] = v
    if options["batch"] not in ("auto", "map", "vmap"):
        raise FimkitError(
            f"The 'batch' argument of load_petab must be 'auto', 'map' or 'vmap'. Got "
            f"{describe(options['batch'])}."
        )
    from .ode import _is_diffrax_solver

    if not (options["solver"] in SOLVERS or _is_diffrax_solver(options["solver"])):
        raise FimkitError(
            f"The 'solver' argument of load_petab must be one of {list(SOLVERS)} or a diffrax "
            f"solver. Got {describe(options['solver'])}."
        )
    if options["unroll"] not in ("auto", True, False):
        raise FimkitError(
            f"The 'unroll' argument of load_petab must be 'auto', True or False. Got "
            f"{describe(options['unroll'])}."
        )
    for k in ("rtol", "atol", "steady_state_rtol", "steady_state_atol"):
        if not isinstance(options[k], int | float) or not options[k] > 0:
            raise FimkitError(
                f"The '{k}' argument of load_petab must be a number > 0. Got {describe(options[k])}."
            )
    return PetabProblem(tables, system, observables, issues, options)


__all__ = [
    "DEFAULT_SOLVER",
    "SOLVERS",
    "SOLVER_PRESETS",
    "PetabError",
    "PetabFit",
    "PetabProblem",
    "PetabWarning",
    "ValidationIssue",
    "lint_petab",
    "load_petab",
]
