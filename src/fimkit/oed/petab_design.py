"""Optimal design of new measurements for a PEtab problem: which (condition, observable) pairs to
measure, and when, given the measurements the problem already has.

`optimize_design(problem, x, space)` (with a `PetabProblem` from `load_petab` and a
`PetabDesignSpace`) works on a grid of candidate measurement rows:

1. every candidate row (a pair and a time of the grid) is appended to the problem's measurement
   table, with the observable and noise parameter overrides of the existing rows of that pair (or
   those the space gives), and ONE forward-sensitivity solve of the extended problem gives the
   expected information of every row (`PetabProblem.information_per_measurement`): normal
   ∂μᵀ∂μ/σ² + 2 ∂σᵀ∂σ/σ², Laplace (∂μᵀ∂μ + ∂σᵀ∂σ)/b², noise parameters included;
2. the information of the existing rows is the prior (`keep_existing=True`, the default), to which
   a `prior` from elsewhere may be added; independent measurements add their information, so the
   information after the experiment is F = F₀ + Σ_{chosen rows} M(row);
3. `n` rows are chosen by a Fedorov-type exchange (the swap of one chosen row for one candidate
   that improves the criterion most, until none does), from a greedy start and random starts
   (multistart). Candidates may be repeated (`replicates=True`: replicate samples) or not.

`optimal_weights(problem, x, space)` gives the approximate design (weights on the candidates) by
the multiplicative algorithm of `fimkit.oed.approximate`, with the equivalence-theorem certificate.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp
import numpy as np

from ..errors import DesignError, FimkitError, ParameterError, describe
from ..information.fim import FisherInformation, format_direction
from ..report.tables import Summary, Table, fmt
from ._engine import Problem, matrix_program, prior_matrix
from .criteria import Context, as_criterion
from .optimize import StartRecord
from .robust import RobustCriterion

# Swaps scored per call of the batched criterion program (bounds the memory of one batch).
SWAP_CHUNK = 4096


def _cell_text(value: Any) -> str:
    """An observableParameters/noiseParameters cell as PEtab text ("" when empty)."""
    if value is None:
        return ""
    if isinstance(value, float) and np.isnan(value):
        return ""
    if isinstance(value, int | float | np.number):
        return repr(float(value))
    return str(value).strip()


@dataclass(frozen=True, eq=False)
class PetabDesignSpace:
    """Where new measurements of a PEtab problem may go (see the module docstring).

    **Arguments:**
    - `n`: the number of new measurements (rows of the measurement table) to choose.
    - `pairs`: the (simulation condition, observable) pairs that may be measured, as
      ``(simulationConditionId, observableId)`` or ``(preequilibrationConditionId or None,
      simulationConditionId, observableId)``; default: every pair the measurement table has.
      A pair given without its pre-equilibration condition takes the one the existing rows of
      that simulation condition have (it must be unique).
    - `bounds`: the time window ``(lower, upper)`` of the new samples; default from 0 to the last
      finite measurement time of the problem. The candidates are `n_candidates` evenly spaced times
      within it (default 50).
    - `candidates`: the candidate times instead (one list for every pair).
    - `replicates`: whether a candidate (pair and time) may be chosen more than once (default
      True: replicate samples at the same time are independent measurements).
    - `keep_existing`: add the information of the problem's existing measurements (default True).
    - `observable_parameters`, `noise_parameters`: the ``observableParameters`` and
      ``noiseParameters`` cells of the new rows, ``{observableId or (simulationConditionId,
      observableId): "cell"}``. Default: those of the existing rows of the pair, else of the
      existing rows of the observable; an error names the pair when these are not unique.
    """

    n: int = 1
    pairs: Any = None
    bounds: Any = None
    candidates: Any = None
    n_candidates: int = 50
    replicates: bool = True
    keep_existing: bool = True
    observable_parameters: Mapping[Any, Any] | None = None
    noise_parameters: Mapping[Any, Any] | None = None

    def __post_init__(self) -> None:
        owner = "PetabDesignSpace"
        if isinstance(self.n, bool) or not isinstance(self.n, int | np.integer) or self.n < 1:
            raise DesignError(
                f"The 'n' argument of {owner} (the number of new measurements) must be an integer "
                f">= 1. Got {describe(self.n)}."
            )
        object.__setattr__(self, "n", int(self.n))
        if self.pairs is not None:
            pairs = []
            items = [self.pairs] if isinstance(self.pairs, str) else self.pairs
            try:
                items = list(items)
            except TypeError as exc:
                raise DesignError(
                    f"The 'pairs' argument of {owner} must be a list of (simulationConditionId, "
                    f"observableId) pairs. Got {describe(self.pairs)}."
                ) from exc
            for p in items:
                ok = isinstance(p, tuple | list) and len(p) in (2, 3)
                if ok:
                    *pre, sim, obs = p
                    ok = (
                        isinstance(sim, str)
                        and isinstance(obs, str)
                        and all(q is None or isinstance(q, str) for q in pre)
                    )
                if not ok:
                    raise DesignError(
                        f"Each entry of the 'pairs' argument of {owner} must be "
                        "(simulationConditionId, observableId) or (preequilibrationConditionId or "
                        f"None, simulationConditionId, observableId), as strings. Got {describe(p)}."
                    )
                pairs.append(tuple(p))
            if not pairs:
                raise DesignError(f"The 'pairs' argument of {owner} must not be empty. Got [].")
            if len(set(pairs)) != len(pairs):
                raise DesignError(f"The 'pairs' argument of {owner} has duplicates: {pairs}.")
            object.__setattr__(self, "pairs", tuple(pairs))
        if self.bounds is not None and self.candidates is not None:
            raise DesignError(
                f"{owner} takes 'bounds' (a time window) or 'candidates' (times), not both. Got "
                f"bounds={self.bounds!r} and candidates={describe(self.candidates)}."
            )
        if self.bounds is not None:
            try:
                lo, hi = (float(v) for v in self.bounds)
            except (TypeError, ValueError) as exc:
                raise DesignError(
                    f"The 'bounds' argument of {owner} must be a time window (lower, upper). Got "
                    f"{describe(self.bounds)}."
                ) from exc
            if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo < hi):
                raise DesignError(
                    f"The 'bounds' argument of {owner} must be a non-empty time window (lower, "
                    f"upper) with 0 <= lower < upper, both finite. Got {describe(self.bounds)}."
                )
            object.__setattr__(self, "bounds", (lo, hi))
        if self.candidates is not None:
            try:
                c = np.asarray(self.candidates, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError) as exc:
                raise DesignError(
                    f"The 'candidates' argument of {owner} must be a list of times. Got "
                    f"{describe(self.candidates)}."
                ) from exc
            if c.size == 0 or not np.all(np.isfinite(c)) or np.any(c < 0):
                raise DesignError(
                    f"The 'candidates' argument of {owner} must be a non-empty list of finite "
                    f"times >= 0. Got {describe(self.candidates)}."
                )
            object.__setattr__(self, "candidates", tuple(np.unique(c).tolist()))
        nc = self.n_candidates
        if isinstance(nc, bool) or not isinstance(nc, int | np.integer) or nc < 1:
            raise DesignError(
                f"The 'n_candidates' argument of {owner} must be an integer >= 1. Got "
                f"{describe(nc)}."
            )
        for name in ("replicates", "keep_existing"):
            if not isinstance(getattr(self, name), bool):
                raise DesignError(
                    f"The '{name}' argument of {owner} must be True or False. Got "
                    f"{describe(getattr(self, name))}."
                )
        for name in ("observable_parameters", "noise_parameters"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, Mapping):
                raise DesignError(
                    f"The '{name}' argument of {owner} must be a dict {{observableId or "
                    f"(simulationConditionId, observableId): cell}}. Got {describe(v)}."
                )


@dataclass(frozen=True)
class _Pair:
    pre: str | None
    sim: str
    obs: str
    observable_parameters: str
    noise_parameters: str

    @property
    def label(self) -> str:
        cond = self.sim if self.pre is None else f"{self.pre}→{self.sim}"
        return f"{cond}/{self.obs}"


def _overrides(problem, space: PetabDesignSpace, pre, sim, obs) -> tuple[str, str]:
    """The observableParameters and noiseParameters cells of new rows of one pair."""
    meas = problem.measurements
    of_obs = meas[meas["observableId"].astype(str) == obs]
    same = of_obs[of_obs["simulationConditionId"].astype(str) == sim]
    if "preequilibrationConditionId" in meas.columns:
        pre_col = same["preequilibrationConditionId"]
        same = same[[(c if isinstance(c, str) and c else None) == pre for c in pre_col]]
    ob = problem._observables[obs]
    out = []
    for col, given, n_ph in (
        ("observableParameters", space.observable_parameters, len(ob.obs_placeholders)),
        ("noiseParameters", space.noise_parameters, len(ob.noise_placeholders)),
    ):
        given = given or {}
        if (sim, obs) in given:
            out.append(_cell_text(given[(sim, obs)]))
            continue
        if obs in given:
            out.append(_cell_text(given[obs]))
            continue
        arg = "observable_parameters" if col.startswith("observable") else "noise_parameters"
        if n_ph == 0:
            out.append("")
            continue
        found = None
        for rows, where in ((same, "in this condition"), (of_obs, "of this observable")):
            if not len(rows):
                continue
            cells = rows[col] if col in rows.columns else [None] * len(rows)
            values = sorted({_cell_text(c) for c in cells})
            if len(values) > 1:
                raise FimkitError(
                    f"New measurements of observable {obs!r} in condition {sim!r} need their "
                    f"{col}: the existing rows {where} have {len(values)} different ones "
                    f"{values[:6]}. Give them: PetabDesignSpace({arg}={{({sim!r}, {obs!r}): "
                    "...}})."
                )
            found = values[0]
            break
        if found is None:
            raise FimkitError(
                f"New measurements of observable {obs!r} need their {col} ({n_ph} placeholder(s)),"
                f" and no existing row of {obs!r} shows them. Give them: PetabDesignSpace("
                f"{arg}={{{obs!r}: ...}})."
            )
        out.append(found)
    return out[0], out[1]


def _pairs(problem, space: PetabDesignSpace) -> list[_Pair]:
    from ..models.petab import PetabError

    obs_ids = list(problem._observables)
    cond_ids = list(problem._tables.conditions.index)
    if space.pairs is None:
        meas = problem.measurements
        pre_col = (
            meas["preequilibrationConditionId"]
            if "preequilibrationConditionId" in meas.columns
            else [None] * len(meas)
        )
        raw = list(
            dict.fromkeys(
                (p if isinstance(p, str) and p else None, str(s), str(o))
                for p, s, o in zip(
                    pre_col, meas["simulationConditionId"], meas["observableId"], strict=True
                )
            )
        )
    else:
        raw = []
        for p in space.pairs:
            if len(p) == 3:
                raw.append(tuple(p))
                continue
            sim, obs = p
            pres = sorted(
                {pre for pre, s in problem.experiments if s == sim}, key=lambda v: (v is None, v)
            )
            if len(pres) > 1:
                raise PetabError(
                    f"The pair {p!r} of 'space.pairs' is ambiguous: simulation condition {sim!r} is "
                    f"pre-equilibrated in {pres} in the measurement table. Give "
                    f"(preequilibrationConditionId, {sim!r}, {obs!r})."
                )
            raw.append((pres[0] if pres else None, sim, obs))
    out = []
    for pre, sim, obs in raw:
        if obs not in obs_ids:
            raise PetabError(
                f"The 'pairs' of the design space name observable {obs!r}, which is not in the "
                f"observable table of {problem.name!r}; the observables are {obs_ids}."
            )
        for c, what in ((sim, "simulation"), (pre, "pre-equilibration")):
            if c is not None and c not in cond_ids:
                raise PetabError(
                    f"The 'pairs' of the design space name {what} condition {c!r}, which is not "
                    f"in the condition table of {problem.name!r}; the conditions are {cond_ids}."
                )
        op, nop = _overrides(problem, space, pre, sim, obs)
        out.append(_Pair(pre, sim, obs, op, nop))
    return out


def _candidate_times(problem, space: PetabDesignSpace) -> np.ndarray:
    if space.candidates is not None:
        return np.asarray(space.candidates, dtype=np.float64)
    if space.bounds is not None:
        lo, hi = space.bounds
    else:
        t = problem.measurements["time"].astype(float).to_numpy()
        t = t[np.isfinite(t)]
        lo, hi = 0.0, float(t.max()) if t.size else 0.0
        if not hi > lo:
            raise DesignError(
                "The default time window of the design space (0 to the last finite measurement "
                f"time) is empty: the last time is {hi:g}. Give PetabDesignSpace(bounds=(lower, "
                "upper)) or candidates=[...]."
            )
    if space.n_candidates == 1:
        return np.array([hi])
    return np.linspace(lo, hi, space.n_candidates)


def _candidate_table(problem, pairs: Sequence[_Pair], times: np.ndarray):
    import pandas as pd

    with_pre = "preequilibrationConditionId" in problem.measurements.columns or any(
        p.pre is not None for p in pairs
    )
    rows = []
    for k, p in enumerate(pairs):
        for t in times:
            row = {"observableId": p.obs}
            if with_pre:
                row["preequilibrationConditionId"] = p.pre or ""
            row |= {
                "simulationConditionId": p.sim,
                # A placeholder: the expected information does not depend on measured values
                # (positive, for log-transformed observables).
                "measurement": 1.0,
                "time": float(t),
                "observableParameters": p.observable_parameters,
                "noiseParameters": p.noise_parameters,
                "_pair": k,
            }
            rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True, eq=False)
class _Setup:
    """The candidates and their informations, on the coordinates and parameters of the criterion."""

    problem: Any
    x: np.ndarray
    pairs: list[_Pair]
    candidates: Any  # DataFrame: one row per candidate, with 'simulation', 'sigma'
    E: np.ndarray  # (C, p, p) per candidate, about ctx.names
    prior: np.ndarray  # (p, p)
    prior_fim: FisherInformation | None
    ctx: Context
    crit: Any
    theta: np.ndarray  # every parameter, in the coordinates of the information
    fim_names: tuple[str, ...]
    fim_scale: str
    scale: str
    has_prior: bool

    def fim(self, F: np.ndarray, provenance: Mapping[str, Any]) -> FisherInformation:
        prov = {**self.problem._provenance("expected (closed form)"), **provenance}
        if self.scale == "petab":
            prov["coordinates"] = "PEtab scales (theta holds the scaled values)"
        return FisherInformation(
            F, self.ctx.names, self.theta[list(self.ctx.index)], self.fim_scale, prov
        )


def _setup(problem, x, space, criterion, scale, params, prior) -> _Setup:
    import pandas as pd

    if not isinstance(space, PetabDesignSpace):
        raise DesignError(
            "The 'space' argument of optimize_design for a PEtab problem must be a "
            f"PetabDesignSpace (e.g. PetabDesignSpace(n=4, pairs=[('c1', 'obs_a')])). Got "
            f"{describe(space)}."
        )
    scale = "petab" if scale is None else scale
    arr = problem._x(x)
    d, names, theta, fim_scale = problem._coordinates(arr, scale)
    names = tuple(names)
    if params is None:
        sub = names
    else:
        sub = (params,) if isinstance(params, str) else tuple(params)
        unknown = [n for n in sub if n not in names]
        if unknown or not sub or len(set(sub)) != len(sub):
            raise ParameterError(
                f"The 'params' argument must list distinct parameters of the information {list(names)}"
                f" (the ones to estimate; the others are known). Got {describe(params)}."
            )
    ctx = Context(tuple(sub), names, tuple(names.index(n) for n in sub), fim_scale)
    crit = as_criterion(criterion)
    if isinstance(crit, RobustCriterion):
        raise FimkitError(
            f"Designs for PEtab problems take local criteria (D, A, E, ME, trace, Ds, c); "
            f"{crit.label} averages over parameter samples. Got criterion={describe(criterion)}."
        )
    crit = crit.bind(ctx)
    P_user, prior_fim = prior_matrix(prior, ctx, theta)

    pairs = _pairs(problem, space)
    times = _candidate_times(problem, space)
    cand = _candidate_table(problem, pairs, times)
    existing = problem.measurements
    n0 = len(existing)
    table = pd.concat([existing, cand.drop(columns="_pair")], ignore_index=True)
    extended = problem.with_measurements(table)
    E_all, h, sigma = extended._row_information(arr)
    idx = np.asarray(ctx.index)
    DD = np.outer(d, d)[np.ix_(idx, idx)]
    E_all = E_all[:, idx[:, None], idx[None, :]] * DD
    E = E_all[n0:]
    P0 = P_user.copy()
    if space.keep_existing:
        P0 = P0 + E_all[:n0].sum(axis=0)
    cand = cand.assign(simulation=h[n0:], sigma=sigma[n0:])
    return _Setup(
        problem,
        arr,
        pairs,
        cand,
        E,
        P0,
        prior_fim,
        ctx,
        crit,
        np.asarray(theta, dtype=np.float64),
        names,
        fim_scale,
        scale,
        bool(space.keep_existing or prior is not None),
    )


def _utilities(st: _Setup):
    """Fs (B, p, p) → (utilities, values), −inf utility where the criterion is not finite."""
    mat = matrix_program(st.crit, st.ctx, batched=True)
    th = jnp.asarray(st.theta)[None, :]

    def run(Fs):
        us, vs = [], []
        for a in range(0, Fs.shape[0], SWAP_CHUNK):
            block = Fs[a : a + SWAP_CHUNK]
            m = block.shape[0]
            # Batches padded to a power of two: the program compiles for a few shapes only.
            size = min(SWAP_CHUNK, 1 << max(m - 1, 1).bit_length())
            padded = np.concatenate(
                [block, np.broadcast_to(block[:1], (size - m, *block.shape[1:]))]
            )
            u, v = mat(jnp.asarray(padded[:, None]), th)
            us.append(np.asarray(u)[:m])
            vs.append(np.asarray(v)[:m])
        u = np.concatenate(us)
        return np.where(np.isfinite(u), u, -np.inf), np.concatenate(vs)

    return run


def _greedy(st: _Setup, n: int, replicates: bool, score) -> list[int]:
    """One candidate at a time, the best for the criterion of the information so far (with a
    small ridge, so that a singular start still ranks the candidates)."""
    p = st.prior.shape[0]
    total = st.E.sum(axis=0)
    ridge = 1e-8 * max(float(np.trace(total + st.prior)) / p, 1e-300)
    F = st.prior + ridge * np.eye(p)
    sel: list[int] = []
    for _ in range(n):
        ok = np.ones(st.E.shape[0], bool)
        if not replicates:
            ok[sel] = False
        js = np.flatnonzero(ok)
        u, _ = score(F[None] + st.E[js])
        j = int(js[int(np.argmax(u))])
        sel.append(j)
        F = F + st.E[j]
    return sorted(sel)


def _exchange(st: _Setup, sel: list[int], replicates: bool, score, max_iter: int, tol: float):
    """Fedorov-type exchange from `sel`: returns (selection, utility, StartRecord)."""
    C = st.E.shape[0]
    sel = list(sel)
    F = st.prior + st.E[sel].sum(axis=0)
    u = float(score(F[None])[0][0])
    u_start, hist, iters, evals = u, [u], 0, 1
    improved = True
    while improved and iters < max_iter:
        iters += 1
        moves, blocks = [], []
        # Positions holding the same candidate offer the same swaps.
        for i in sorted(set(sel)):
            ok = np.ones(C, bool)
            if not replicates:
                ok[sel] = False
            ok[i] = False
            js = np.flatnonzero(ok)
            if js.size:
                blocks.append(F[None] + st.E[js] - st.E[i])
                moves.extend((i, int(j)) for j in js)
        if not moves:
            break
        us, _ = score(np.concatenate(blocks))
        evals += len(moves)
        k = int(np.argmax(us))
        # From a singular information (u = −inf) any finite utility is an improvement.
        threshold = u + tol * max(1.0, abs(u)) if np.isfinite(u) else -np.inf
        improved = bool(np.isfinite(us[k]) and us[k] > threshold)
        if improved:
            i, j = moves[k]
            sel[sel.index(i)] = j
            sel.sort()
            F = st.prior + st.E[sel].sum(axis=0)
            u = float(us[k])
            hist.append(u)
    converged = not improved
    record = StartRecord(
        np.zeros(0),
        np.asarray(sel, dtype=float),
        u_start,
        u,
        iters,
        evals,
        converged,
        "no improving exchange" if converged else "max_iter reached",
        np.asarray(hist),
    )
    return sel, u, record


@dataclass(frozen=True, eq=False)
class PetabDesignResult:
    """New measurements for a PEtab problem, from `optimize_design(problem, x, space)`.

    **Fields:**
    - `measurements`: the chosen rows as a PEtab measurement table (pandas; a replicated
      candidate appears once per replicate). Their ``measurement`` column holds the model's
      prediction at `x` (the untransformed observable): replace it with the measured values, then
      ``problem.with_measurements(pd.concat([problem.measurements, measurements]))``.
    - `candidates`: every candidate row, with the prediction (``simulation``), its noise
      (``sigma``) and how often it was chosen (``count``).
    - `value`, `initial_value`: the criterion after (prior and new rows) and before (prior only;
      NaN without a prior or with a singular one); `criterion`; `fim`, `initial_fim`: the
      informations after and before (`initial_fim` None without a prior).
    - `status`: ``"optimal"`` (every exchange stopped with no improving swap),
      ``"max_iterations"`` or ``"infeasible"`` (the information stays singular: `message` names
      the undetermined directions); `message`, `method`, `history` (one `StartRecord` per start:
      `end` holds the chosen candidate indices), `n_evaluations`, `seconds`, `x`.
    """

    measurements: Any
    candidates: Any
    value: float
    initial_value: float
    criterion: Any
    fim: FisherInformation
    initial_fim: FisherInformation | None
    status: str
    message: str
    method: str
    history: tuple[StartRecord, ...]
    n_evaluations: int
    seconds: float
    x: np.ndarray
    context: Context | None = None
    null_directions: np.ndarray | None = field(default=None, repr=False)

    @property
    def feasible(self) -> bool:
        return self.status != "infeasible"

    def efficiency(self) -> float:
        """The efficiency of the information after the new measurements relative to before, by the
        criterion's formula (for D: (det F / det F₀)^(1/p)); NaN without a (regular) prior."""
        if not (np.isfinite(self.value) and np.isfinite(self.initial_value)):
            return float("nan")
        return self.criterion.efficiency(self.value, self.initial_value, self.context)

    def summary(self) -> Summary:
        crit = self.criterion
        eff = self.efficiency()
        gain = f"{100 * (eff - 1):+.3g} %" if np.isfinite(eff) else "-"
        t1 = Table(
            f"Design criterion {crit.label} ({'max' if crit.maximize else 'min'})",
            ("information", "value", "efficiency gain"),
            (
                ("before (prior)", fmt(self.initial_value, 6), ""),
                ("after", fmt(self.value, 6), gain),
            ),
            (
                f"status: {self.status}. {self.message}",
                f"method: {self.method}; {self.n_evaluations} evaluations in {self.seconds:.2g} s",
            ),
        )
        c = self.candidates
        chosen = c[c["count"] > 0]
        pre = "preequilibrationConditionId" in c.columns
        rows = tuple(
            (
                (
                    f"{r['preequilibrationConditionId']}→"
                    if pre and r["preequilibrationConditionId"]
                    else ""
                )
                + str(r["simulationConditionId"]),
                str(r["observableId"]),
                f"{r['time']:.6g}",
                str(int(r["count"])),
                fmt(float(r["simulation"])),
                fmt(float(r["sigma"])),
            )
            for _, r in chosen.iterrows()
        )
        t2 = Table(
            f"New measurements ({len(self.measurements)})",
            ("condition", "observable", "time", "count", "prediction", "sigma"),
            rows,
        )
        from .optimize import _safe_se

        se0, se1 = _safe_se(self.initial_fim), _safe_se(self.fim)
        srows = tuple((n, fmt(se0.get(n, np.nan)), fmt(se1.get(n, np.nan))) for n in self.fim.names)
        t3 = Table(
            "Cramér–Rao standard errors (prior included)", ("parameter", "before", "after"), srows
        )
        return Summary((t1, t2, t3))

    def __str__(self) -> str:
        return str(self.summary())

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()


def optimize_petab_design(
    problem: Any,
    x: Any,
    space: PetabDesignSpace,
    criterion: Any = "D",
    *,
    scale: str | None = None,
    params: Sequence[str] | None = None,
    prior: FisherInformation | None = None,
    n_starts: int = 10,
    max_iter: int = 200,
    tol: float = 1e-10,
    seed: int = 0,
) -> PetabDesignResult:
    """`optimize_design` for a `PetabProblem` (see the module docstring).

    **Arguments:**
    - `problem`, `x`: the PEtab problem and the estimated parameters on their PEtab scales (None:
      nominal) at which the information is computed.
    - `space`: a `PetabDesignSpace`.
    - `criterion`: ``"D"`` (default), ``"A"``, ``"E"``, ``"ME"``, ``"trace"``, or a local criterion
      object (`DsOptimal(names)` with names as in `problem.names`, `COptimal(g)`).
    - `scale`: the coordinates of the information: ``"petab"`` (default: the parameters on their
      PEtab scales, as `problem.fisher_information`), ``"log"`` or ``"lin"``. D-optimal designs
      do not depend on it; A, E and c do.
    - `params`: the parameters to estimate (default all); the others count as known.
    - `prior`: a `FisherInformation` from elsewhere (same parameters, coordinates and x), added to
      that of the existing measurements.
    - `n_starts`: exchanges from the greedy selection and `n_starts - 1` random ones; `max_iter`,
      `tol`: the exchange's limits (steps; relative improvement that counts); `seed`.
    """
    t_start = time.perf_counter()
    for arg, v in (("n_starts", n_starts), ("max_iter", max_iter)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise FimkitError(f"The '{arg}' argument must be an integer >= 1. Got {describe(v)}.")
    if not isinstance(tol, int | float) or not tol > 0:
        raise FimkitError(f"The 'tol' argument must be a number > 0. Got {describe(tol)}.")
    st = _setup(problem, x, space, criterion, scale, params, prior)
    C = st.E.shape[0]
    n, replicates = space.n, space.replicates
    if not replicates and n > C:
        raise DesignError(
            f"The design space asks for n={n} new measurements without replicates, but has only "
            f"{C} candidates ({len(st.pairs)} pair(s) × {C // len(st.pairs)} times). Allow "
            "replicates=True, or add candidates."
        )
    score = _utilities(st)
    rng = np.random.default_rng(seed)
    starts = [_greedy(st, n, replicates, score)]
    for _ in range(n_starts - 1):
        starts.append(sorted(rng.choice(C, size=n, replace=replicates).tolist()))
    best, records, evals = None, [], 0
    for s in starts:
        sel, u, rec = _exchange(st, s, replicates, score, int(max_iter), float(tol))
        rec = StartRecord(
            np.asarray(s, dtype=float), rec.end, rec.start_utility, rec.end_utility,
            rec.iterations, rec.evaluations, rec.converged, rec.message, rec.history,
        )  # fmt: skip
        evals += rec.evaluations
        records.append(rec)
        if best is None or u > best[1]:
            best = (sel, u, rec)
    sel, u, rec = best
    counts = np.bincount(np.asarray(sel, dtype=int), minlength=C)
    F = st.prior + st.E[sel].sum(axis=0)
    _, (v,) = score(F[None])
    value = float(v) if np.isfinite(u) else float("nan")
    if st.has_prior:
        u0, (v0,) = score(st.prior[None])
        initial_value = float(v0) if np.isfinite(u0[0]) else float("nan")
    else:
        initial_value = float("nan")
    prov = {
        "design": f"{n} new measurement(s) of {[p.label for p in st.pairs]}",
        "criterion": st.crit.label,
        "prior": "existing measurements"
        if space.keep_existing
        else ("added" if prior is not None else None),
    }
    fim = st.fim(F, prov)
    initial_fim = st.fim(st.prior, {"design": "prior"}) if st.has_prior else None
    status = "optimal" if rec.converged else "max_iterations"
    message = (
        "The exchange stopped: no swap improves the criterion."
        if rec.converged
        else "An exchange stopped at its iteration limit; raise max_iter."
    )
    null = None
    if initial_fim is not None and initial_fim.rank() < initial_fim.size:
        if st.crit.requires_full_rank:
            initial_value = float("nan")
    if fim.rank() < fim.size:
        null = fim.null_space()
        if st.crit.requires_full_rank:
            # As optimize_design's verdict: a singular information (at the default rank
            # tolerance) has no criterion value.
            value = float("nan")
            status = "infeasible"
            message = (
                f"The information after {n} new measurement(s) is singular: the data cannot "
                "determine ["
                + "; ".join(format_direction(null[:, j], fim.names) for j in range(null.shape[1]))
                + "]. Add measurements (a larger n, other pairs), a prior, or fix parameters "
                "(params=...)."
            )
    cand = st.candidates.drop(columns="_pair").assign(count=counts)
    chosen = cand.loc[np.repeat(np.arange(C), counts)]
    sort = ["simulationConditionId", "observableId", "time"]
    meas = (
        chosen.sort_values(sort, kind="stable")
        .assign(measurement=lambda df: df["simulation"])
        .drop(columns=["simulation", "sigma", "count"])
        .reset_index(drop=True)
    )
    return PetabDesignResult(
        measurements=meas,
        candidates=cand,
        value=value,
        initial_value=initial_value,
        criterion=st.crit,
        fim=fim,
        initial_fim=initial_fim,
        status=status,
        message=message,
        method="exchange (Fedorov type) on candidate measurement rows, greedy + random starts",
        history=tuple(records),
        n_evaluations=evals,
        seconds=time.perf_counter() - t_start,
        x=st.x,
        context=st.ctx,
        null_directions=null,
    )


def petab_optimal_weights(
    problem: Any,
    x: Any,
    space: PetabDesignSpace,
    criterion: Any = "D",
    *,
    scale: str | None = None,
    params: Sequence[str] | None = None,
    prior: FisherInformation | None = None,
    n_obs: float | None = None,
    tol: float = 1e-6,
    max_iter: int = 20000,
    rtol: float = 1e-3,
):
    """`optimal_weights` for a `PetabProblem`: weights on the candidate rows of `space`.

    F(w) = F₀ + n_obs·Σ_c w_c M(c), with F₀ the information of the existing measurements (and
    `prior`) and `n_obs` the number of new measurements (default `space.n`). Returns an
    `ApproximateDesign` whose `groups` index the pairs (in the order of ``result.pairs``, the
    candidates table of `optimize_design`) and whose `times` are the candidate times.
    """
    from .approximate import (
        ApproximateDesign,
        _certificate,
        _check_weights_criterion,
        _multiplicative,
        _weights_functions,
    )

    st = _setup(problem, x, space, criterion, scale, params, prior)
    _check_weights_criterion(st.crit)
    n_obs = float(space.n if n_obs is None else n_obs)
    if not np.isfinite(n_obs) or n_obs <= 0:
        raise FimkitError(f"The 'n_obs' argument must be a number > 0. Got {describe(n_obs)}.")
    eng = Problem(None, None, st.theta, st.ctx, st.crit, st.prior, st.prior_fim, None)
    E = st.E[None]
    times = st.candidates["time"].to_numpy(dtype=float)
    gidx = st.candidates["_pair"].to_numpy(dtype=int)
    w, iters, conv = _multiplicative(eng, E, n_obs, tol, max_iter)
    cert = _certificate(eng, E, times, gidx, w, n_obs, rtol)
    _, value = _weights_functions(eng, E, n_obs)
    return ApproximateDesign(
        times, gidx, w, float(value(jnp.asarray(w))), st.crit, cert, iters, conv, None
    )


__all__ = [
    "PetabDesignResult",
    "PetabDesignSpace",
    "optimize_petab_design",
    "petab_optimal_weights",
]
