"""`optimize_design`: the design in a `DesignSpace` that optimises a criterion.

The information of independent observations adds, F = F₀ + Σ_g n_g Σ_k M(t_gk, doses_g), and
`fimkit.oed._engine` computes it, and its exact derivatives with respect to the design, from one
compiled model program per design structure. On top of it:

- **continuous times and doses** are optimised by SLSQP with exact gradients (forward mode through
  the model and the ODE solve), bounds, and the order and spacing of the times as linear constraints.
  Multistart: random feasible designs are screened in vmapped batches and the best of each share
  starts a local search, as does the initial design;
- **candidate grids** use an exchange algorithm (Fedorov type): the informations M(t) of all
  candidates come from one call, then every swap of a chosen time for a candidate is scored in one
  vmapped batch of small matrix computations, and the best swap is made until none improves;
- **group sizes under a budget** are continuous shares during the search (F is linear in them), then
  rounded to integers within the budget, and the other variables are optimised again.

Discrete structural choices (the number of samples per subject, which outputs to measure, dose
levels) are enumerated: each combination is optimised and the best kept. Approximate designs and the
equivalence theorem are in `fimkit.oed.approximate`; comparisons and design gradients in
`fimkit.oed.compare`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import numpy as np

from ..design import Bolus, Design, Group, Infusion, as_design
from ..errors import (
    DesignError,
    FimkitError,
    SolverError,
    describe,
)
from ..information.fim import FisherInformation, format_direction
from ..models import is_petab_problem
from ..prediction import Setup
from ..report.tables import Summary, Table, fmt
from ._engine import (
    Evaluation,
    Layout,
    Problem,
    Runner,
    evaluate,
    fixed_runner,
    make_problem,
    matrix_program,
    model_program,
    verdict,
)
from .criteria import Context
from .space import DesignSpace, GroupSpace

if TYPE_CHECKING:
    from .petab_design import PetabDesignResult

MAX_CHOICES = 512
SCREEN_CHUNK = 64  # designs per call of the vmapped screening program

# -- structural choices --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Choice:
    """One combination of the discrete choices: count of free times, outputs, dose levels per group."""

    counts: tuple[int, ...]
    outputs: tuple[tuple[str, ...] | None, ...]
    levels: tuple[tuple[float | None, ...], ...]

    def describe(self) -> str:
        parts = []
        for g, (k, o, lv) in enumerate(zip(self.counts, self.outputs, self.levels, strict=True)):
            text = f"group {g}: {k} free time(s)"
            if o is not None:
                text += f", outputs {list(o)}"
            chosen = [v for v in lv if v is not None]
            if chosen:
                text += f", dose levels {chosen}"
            parts.append(text)
        return "; ".join(parts)


def _choices(space: DesignSpace) -> list[_Choice]:
    per_group = []
    for g in space.groups:
        per_group.append(list(itertools.product(g.n_times, g.output_choices, g.level_choices())))
    total = int(np.prod([len(c) for c in per_group]))
    if total > MAX_CHOICES:
        raise DesignError(
            f"The design space has {total} combinations of discrete choices (counts of times, "
            f"output options, dose levels) over its groups; at most {MAX_CHOICES} are enumerated. "
            "Fix some of them."
        )
    out = []
    for combo in itertools.product(*per_group):
        out.append(
            _Choice(
                tuple(c[0] for c in combo), tuple(c[1] for c in combo), tuple(c[2] for c in combo)
            )
        )
    return out


def _dose_amounts(gs: GroupSpace, levels: tuple[float | None, ...], values: Sequence[float] | None):
    """The group's doses with numeric amounts replaced by `levels` / `values` (per dose)."""
    out = []
    for i, d in enumerate(gs.doses):
        v = levels[i] if levels[i] is not None else (None if values is None else values[i])
        if v is None:
            out.append(d)
        elif isinstance(d, Bolus):
            out.append(Bolus(d.time, float(v), d.state))
        elif d.rate is not None:
            out.append(Infusion(d.start, d.duration, d.state, rate=float(v)))
        else:
            out.append(Infusion(d.start, d.duration, d.state, amount=float(v)))
    return tuple(out)


def _even_times(gs: GroupSpace, k: int) -> np.ndarray:
    if k == 0:
        return np.zeros(0)
    if gs.candidates is not None:
        c = np.asarray(gs.candidates)
        idx = _spread_indices(c, k, gs.min_spacing, gs.replicates)
        return c[idx]
    if gs.windows is not None:
        t = np.array([(a + b) / 2 for a, b in gs.windows])
        return _repair(t, gs.windows, gs.min_spacing) if gs.ordered else t
    lo, hi = gs.bounds
    # Midpoints of k equal sub-intervals when the spacing allows, else evenly from end to end.
    if (hi - lo) / k >= gs.min_spacing:
        return lo + (np.arange(k) + 0.5) * (hi - lo) / k
    return np.linspace(lo, hi, k)


def _spread_indices(c: np.ndarray, k: int, spacing: float, replicates: bool) -> np.ndarray:
    idx = np.unique(np.round(np.linspace(0, c.size - 1, k)).astype(int))
    if replicates and idx.size < k:
        return np.round(np.linspace(0, c.size - 1, k)).astype(int)
    if idx.size == k and np.all(np.diff(c[idx]) >= spacing * (1 - 1e-12)):
        return idx
    out, last = [], -np.inf
    for j, t in enumerate(c):
        if t >= last + spacing * (1 - 1e-12):
            out.append(j)
            last = t
        if len(out) == k:
            break
    return np.asarray(out)


def _repair(t: np.ndarray, bounds: Sequence[tuple[float, float]], s: float) -> np.ndarray:
    """Ordered times in their windows, `s` apart (forward then backward pass)."""
    t = np.array(t, dtype=float)
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    t = np.clip(np.sort(t) if len(set(bounds)) == 1 else t, lo, hi)
    for i in range(1, t.size):
        t[i] = min(max(t[i], t[i - 1] + s), hi[i])
    for i in range(t.size - 2, -1, -1):
        t[i] = max(min(t[i], t[i + 1] - s), lo[i])
    return t


# -- one structure: its template design, layout and variable bounds ------------------------------------


@dataclass(frozen=True, eq=False)
class _Structure:
    space: DesignSpace
    choice: _Choice
    setup: Setup
    layout: Layout
    times_base: tuple[np.ndarray, ...]
    dose_base: tuple[np.ndarray, ...]
    n_base: np.ndarray
    bounds: tuple[tuple[float, float], ...]
    A: np.ndarray  # ordering constraints A x >= b
    b: np.ndarray

    def design(self, x: np.ndarray, n: np.ndarray | None = None) -> Design:
        """The `Design` of free variables x (group sizes `n` override)."""
        times, doses = self.layout.unpack(x, self.times_base, self.dose_base)
        if n is None:
            n = np.asarray(self.layout.group_sizes(jnp.asarray(x), jnp.asarray(self.n_base)))
        n = np.asarray(n, dtype=float)
        groups = []
        for g, gs in enumerate(self.space.groups):
            ng = round(float(n[g]))
            if ng < 1:
                continue
            values = np.asarray(doses[g])
            amounts = [
                None if GroupSpace._dose_value(d) is None else float(values[gs.dose_value_index(i)])
                for i, d in enumerate(gs.doses)
            ]
            t = np.asarray(times[g])
            groups.append(
                Group(
                    np.sort(t[:-1] if self.layout.anchor else t),
                    self.choice.outputs[g],
                    _dose_amounts(gs, (None,) * len(gs.doses), amounts),
                    ng,
                )
            )
        if not groups:
            raise DesignError("Every group of the design has 0 subjects.")
        return Design(groups=groups)

    def runner(self, problem: Problem) -> Runner:
        return Runner(
            problem, self.setup, self.layout, self.times_base, self.dose_base, self.n_base
        )

    def random_x(self, rng: np.random.Generator) -> np.ndarray:
        parts = []
        for g, k in enumerate(self.layout.counts):
            if not k:
                continue
            gs = self.space.groups[g]
            bnds = gs.time_bounds(k)
            s = gs.min_spacing
            if gs.windows is None:
                lo, hi = bnds[0]
                slack = max(hi - lo - (k - 1) * s, 0.0)
                parts.append(lo + np.sort(rng.uniform(0, slack, k)) + s * np.arange(k))
            else:
                t = np.array([rng.uniform(a, b) for a, b in bnds])
                parts.append(_repair(t, bnds, s) if gs.ordered else t)
        off = sum(self.layout.counts)
        for j in range(len(self.layout.dose_slots)):
            lo, hi = self.bounds[off + j]
            parts.append(np.array([rng.uniform(lo, hi)]))
        if self.layout.costs is not None:
            parts.append(rng.dirichlet(np.ones(self.layout.n_groups)))
        return np.concatenate(parts) if parts else np.zeros(0)


def _top(gs: GroupSpace) -> float:
    """The end of a group's time range: where its anchor goes."""
    ends = list(gs.fixed_times)
    if gs.bounds is not None:
        ends.append(gs.bounds[1])
    if gs.windows is not None:
        ends.extend(w[1] for w in gs.windows)
    if gs.candidates is not None:
        ends.append(max(gs.candidates))
    return max(ends)


def _structure(
    problem: Problem,
    space: DesignSpace,
    choice: _Choice,
    start: Mapping[str, Any] | None = None,
) -> _Structure:
    """Template design, layout and bounds for one choice. `start` gives the initial free times,
    dose amounts and n per group (defaults: evenly spread times, the given amounts)."""
    groups, times_base, counts, bounds, dose_slots = [], [], [], [], []
    rows: list[tuple[int, int, float]] = []
    pos = 0
    continuous = not space.discrete
    for g, gs in enumerate(space.groups):
        k = choice.counts[g] if continuous else 0
        free = (
            np.asarray(start["times"][g], dtype=float)
            if start is not None
            else _even_times(gs, choice.counts[g] if continuous else 0)
        )
        if not continuous:
            free = np.zeros(0)
        fixed = np.asarray(gs.fixed_times, dtype=float)
        full = np.concatenate([free, fixed])
        if continuous:
            full = np.concatenate([full, [_top(gs)]])
        if continuous and k:
            bounds.extend(gs.time_bounds(k))
            if gs.ordered:
                rows.extend((pos + i, pos + i + 1, gs.min_spacing) for i in range(k - 1))
            pos += k
        counts.append(k)
        times_base.append(full if full.size else np.zeros(1))
        amounts = start["doses"][g] if start is not None else None
        doses = _dose_amounts(gs, choice.levels[g], amounts)
        groups.append(Group(full if full.size else [0.0], choice.outputs[g], doses, 1))
    template = Design(groups=groups)
    setup = Setup.build(problem.model, template, problem.noise)
    if setup.names != problem.ctx.all_names:
        raise FimkitError("Internal error: the parameter names changed between structures.")
    for g, gs in enumerate(space.groups):
        for i, db in enumerate(gs.dose_bounds):
            if db is not None:
                dose_slots.append((g, gs.dose_value_index(i)))
                bounds.append(db)
    costs = None
    if space.budget is not None:
        costs = tuple(space.cost(g, choice.counts[g]) for g in range(len(space.groups)))
        bounds.extend([(0.0, 1.0)] * len(space.groups))
    layout = Layout(
        tuple(counts),
        tuple(v.size for v in setup.dose_values),
        tuple(dose_slots),
        costs,
        float(space.budget or 0.0),
        anchor=continuous,
    )
    A = np.zeros((len(rows), layout.size))
    b = np.zeros(len(rows))
    for r, (i, j, s) in enumerate(rows):
        A[r, i], A[r, j], b[r] = -1.0, 1.0, s
    n_base = np.asarray(
        [
            float(start["n"][g]) if start is not None else float(gs.n)
            for g, gs in enumerate(space.groups)
        ]
    )
    return _Structure(
        space,
        choice,
        setup,
        layout,
        tuple(times_base),
        tuple(np.asarray(v, dtype=float) for v in setup.dose_values),
        n_base,
        tuple(bounds),
        A,
        b,
    )


def _x_of(st: _Structure, start: Mapping[str, Any] | None) -> np.ndarray:
    """The free-variable vector of the structure's template (its starting design)."""
    parts = []
    for g, k in enumerate(st.layout.counts):
        if k:
            parts.append(np.asarray(st.times_base[g][:k]))
    for g, vi in st.layout.dose_slots:
        parts.append(np.asarray([st.dose_base[g][vi]]))
    if st.layout.costs is not None:
        n = st.n_base
        share = n * np.asarray(st.layout.costs) / st.layout.budget
        parts.append(share / share.sum() if start is None else share)
    x = np.concatenate(parts) if parts else np.zeros(0)
    lo = np.array([b[0] for b in st.bounds])
    hi = np.array([b[1] for b in st.bounds])
    return np.clip(x, lo, hi) if x.size else x


# -- results --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartRecord:
    """One local optimisation of a multistart run."""

    start: np.ndarray
    end: np.ndarray
    start_utility: float
    end_utility: float
    iterations: int
    evaluations: int
    converged: bool
    message: str
    history: np.ndarray  # the utility after each iteration


@dataclass(frozen=True, eq=False)
class DesignResult:
    """The outcome of `optimize_design`.

    **Fields:**
    - `design`: the best design found; `value`: its criterion value (NaN if infeasible).
    - `initial_design`, `initial_value`: the starting design and its value.
    - `criterion`: the criterion object; `maximize` says which way is better.
    - `fim`, `initial_fim`: the information after the experiment (prior included) at the nominal θ,
      for the best and the starting design.
    - `status`: ``"optimal"`` (every local search converged, or the exchange stopped with no improving
      swap), ``"max_iterations"``, or ``"infeasible"`` (every design tried has a singular
      information: `null_directions` names what the data cannot determine).
    - `message`, `method`, `choice` (the discrete choices of the best design), `history` (one
      `StartRecord` per local search of the best structure), `n_evaluations`, `seconds`.
    """

    design: Design
    value: float
    initial_design: Design
    initial_value: float
    criterion: Any
    fim: FisherInformation | None
    initial_fim: FisherInformation | None
    status: str
    message: str
    method: str
    choice: str
    history: tuple[StartRecord, ...]
    n_evaluations: int
    seconds: float
    null_directions: np.ndarray | None = None
    context: Context | None = None
    _problem: Any = field(default=None, repr=False)
    _space: Any = field(default=None, repr=False)

    @property
    def feasible(self) -> bool:
        return self.status != "infeasible"

    @property
    def maximize(self) -> bool:
        return self.criterion.maximize

    def efficiency(self, other: Any = None) -> float:
        """Efficiency of this design relative to `other` (default: the initial design), by the
        criterion's formula (for D: (det F / det F_other)^(1/p)); > 1 means this design is better."""
        if other is None:
            v0 = self.initial_value
        else:
            v0 = _value_of(self._problem, other)
        return self.criterion.efficiency(self.value, v0, self.context)

    def standard_errors(self) -> dict[str, dict[str, float]]:
        """Cramér–Rao standard errors (on the information's scale) before and after optimisation."""
        return {
            "initial": _safe_se(self.initial_fim),
            "optimal": _safe_se(self.fim),
        }

    def summary(self) -> Summary:
        crit = self.criterion
        sense = "max" if crit.maximize else "min"
        rows = [
            ("initial", fmt(self.initial_value, 6), "1"),
            (
                "optimal",
                fmt(self.value, 6),
                fmt(self.efficiency())
                if self.feasible and np.isfinite(self.initial_value)
                else "-",
            ),
        ]
        notes = [
            f"status: {self.status}. {self.message}",
            f"method: {self.method}; {self.n_evaluations} evaluations in {self.seconds:.2g} s",
            f"best structure: {self.choice}",
        ]
        if self.null_directions is not None and self.fim is not None:
            for j in range(self.null_directions.shape[1]):
                notes.append(
                    "not identifiable along: "
                    + format_direction(self.null_directions[:, j], self.fim.names)
                )
        t1 = Table(
            f"Design criterion {crit.label} ({sense})",
            ("design", "value", "efficiency vs initial"),
            tuple(rows),
            tuple(notes),
        )
        drows = []
        for label, d in (("initial", self.initial_design), ("optimal", self.design)):
            for gi, g in enumerate(d.groups):
                doses = ", ".join(_dose_text(x) for x in g.doses) or "-"
                drows.append(
                    (
                        label,
                        str(gi),
                        str(g.n),
                        ", ".join(f"{t:.4g}" for t in g.times),
                        "all" if g.outputs is None else ", ".join(g.outputs),
                        doses,
                    )
                )
        t2 = Table("Designs", ("design", "group", "n", "times", "outputs", "doses"), tuple(drows))
        se = self.standard_errors()
        names = self.fim.names if self.fim is not None else ()
        col = "SE(log)" if self.context is not None and self.context.scale == "log" else "SE"
        srows = tuple(
            (n, fmt(se["initial"].get(n, np.nan)), fmt(se["optimal"].get(n, np.nan))) for n in names
        )
        t3 = Table(
            "Cramér–Rao standard errors (prior included)",
            ("parameter", f"{col} initial", f"{col} optimal"),
            srows,
        )
        return Summary((t1, t2, t3))

    def __str__(self) -> str:
        return str(self.summary())

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

    def plot(self, ax: Any = None, *, n_points: int = 200):
        """The design on the model's sensitivity curves.

        For each group and measured output, the sensitivities ∂y/∂θ_j (∂y/∂log θ_j on the log scale)
        of the estimated parameters over the time range of the design space, with the optimal
        sampling times as solid vertical lines and the initial ones dashed. Returns the matplotlib
        `Figure` (no pyplot state is touched); `ax` draws a single-panel plot into existing axes.
        """
        return _plot_design(self, ax, n_points)


def _dose_text(d: Any) -> str:
    if isinstance(d, Bolus):
        return (
            f"bolus {d.amount:.4g} @ {d.time:g}"
            if not isinstance(d.amount, str)
            else f"bolus {d.amount} @ {d.time:g}"
        )
    a = d.amount if d.amount is not None else d.rate
    what = "amount" if d.amount is not None else "rate"
    return f"infusion {what} {a if isinstance(a, str) else f'{a:.4g}'} @ {d.start:g}+{d.duration:g}"


def _safe_se(F: FisherInformation | None) -> dict[str, float]:
    if F is None:
        return {}
    if F.rank() < F.size:
        return dict.fromkeys(F.names, float("inf"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return F.standard_errors()


def _value_of(problem: Problem, design: Any) -> float:
    design = as_design(design.design if isinstance(design, DesignResult) else design)
    return evaluate(problem, design)[0].value


# -- continuous optimisation ----------------------------------------------------------------------------


def _slsqp(fun_grad, x0, bounds, A, b, equality, max_iter, tol):
    from scipy.optimize import minimize

    lo = np.array([bb[0] for bb in bounds])
    hi = np.array([bb[1] for bb in bounds])
    if np.all(lo == hi):  # nothing left to move
        return np.asarray(x0, dtype=float), True, 0, 0, "no free variables", np.zeros(0)
    cache: dict[bytes, float] = {}
    history: list[float] = []
    count = [0]

    def f(x):
        u, g = fun_grad(x)
        count[0] += 1
        cache[x.tobytes()] = u
        if not np.isfinite(u):
            return 1e10, np.zeros_like(x)
        return -u, -g

    def callback(xk):
        history.append(cache.get(np.asarray(xk).tobytes(), np.nan))

    cons = []
    if A.shape[0]:
        cons.append({"type": "ineq", "fun": lambda x: A @ x - b, "jac": lambda x: A})
    if equality is not None:
        E = equality
        cons.append({"type": "eq", "fun": lambda x: E @ x - 1.0, "jac": lambda x: E[None, :]})
    res = minimize(
        f,
        x0,
        jac=True,
        method="SLSQP",
        bounds=bounds,
        constraints=cons,
        callback=callback,
        options={"maxiter": max_iter, "ftol": tol},
    )
    x = np.clip(res.x, lo, hi)
    # SLSQP stops within rounding of an active bound: put such variables on it.
    near = 1e-9 * np.maximum(np.abs(hi - lo), 1.0)
    x = np.where(np.abs(x - lo) <= near, lo, np.where(np.abs(x - hi) <= near, hi, x))
    # status 8 ("positive directional derivative in line search") means no descent direction left.
    converged = bool(res.success or res.status == 8)
    return (
        x,
        converged,
        int(getattr(res, "nit", 0)),
        count[0],
        str(res.message),
        np.asarray(history),
    )


def _optimize_continuous(problem, st: _Structure, x0, opts, rng):
    runner = st.runner(problem)
    n_eval = [0]

    def fun_grad(x):
        u, _, _, _, g = runner.grad(x)
        n_eval[0] += 1
        return u, g

    if st.layout.size == 0:
        u, _ = fun_grad(x0)
        return x0, u, (), n_eval[0], True
    starts = [np.asarray(x0, dtype=float)]
    n_screen = opts["n_screen"]
    if n_screen and opts["n_starts"] > 1:
        X = np.stack([st.random_x(rng) for _ in range(n_screen)])
        # Fixed-size chunks (the last one padded) keep one compiled shape for every n_screen; robust
        # criteria take fewer designs per chunk, as each design is a batch over θ samples already.
        chunk = max(1, min(SCREEN_CHUNK, SCREEN_CHUNK * 64 // problem.thetas.shape[0]))
        us = []
        for i in range(0, n_screen, chunk):
            Xc = X[i : i + chunk]
            pad = chunk - Xc.shape[0]
            if pad:
                Xc = np.concatenate([Xc, np.repeat(Xc[-1:], pad, axis=0)])
            us.append(runner.utilities(Xc))
        us = np.concatenate(us)[:n_screen]
        n_eval[0] += n_screen
        # Each start is the best of its own share of the random designs: good and diverse starts.
        for part in np.array_split(np.arange(n_screen), opts["n_starts"] - 1):
            ok = np.isfinite(us[part])
            if part.size and ok.any():
                starts.append(X[part[int(np.argmax(np.where(ok, us[part], -np.inf)))]])
    elif opts["n_starts"] > 1:
        starts.extend(st.random_x(rng) for _ in range(opts["n_starts"] - 1))
    equality = None
    if st.layout.costs is not None:
        equality = np.zeros(st.layout.size)
        equality[-st.layout.n_groups :] = 1.0
    records = []
    for x_start in starts:
        u0, _ = fun_grad(x_start)
        if not np.isfinite(u0):
            records.append(
                StartRecord(x_start, x_start, u0, u0, 0, 1, False, "infeasible start", np.zeros(0))
            )
            continue
        x, conv, nit, nfev, msg, hist = _slsqp(
            fun_grad, x_start, st.bounds, st.A, st.b, equality, opts["max_iter"], opts["tol"]
        )
        u, _ = fun_grad(x)
        records.append(StartRecord(x_start, x, u0, u, nit, nfev, conv, msg, hist))
    best = max(records, key=lambda r: r.end_utility if np.isfinite(r.end_utility) else -np.inf)
    return best.end, best.end_utility, tuple(records), n_eval[0], best.converged


def _round_allocation(share: np.ndarray, costs: Sequence[float], budget: float) -> np.ndarray:
    """Integer group sizes from budget shares: floors, then the largest remainders while affordable."""
    costs = np.asarray(costs, dtype=float)
    real = budget * np.asarray(share) / costs
    n = np.floor(real + 1e-9)
    rem = real - n
    while True:
        left = budget - float(n @ costs)
        ok = costs <= left + 1e-9
        if not ok.any():
            break
        j = int(np.argmax(np.where(ok, rem, -np.inf)))
        n[j] += 1
        rem[j] -= 1
    return n


# -- exchange algorithm for candidate grids -------------------------------------------------------------


def criterion_thetas(problem: Problem) -> np.ndarray:
    """The θ rows a criterion is evaluated at: the samples of a robust criterion, else θ."""
    return problem.samples if problem.robust else problem.theta[None, :]


def candidate_elements(problem: Problem, groups: Sequence[Group]) -> list[np.ndarray]:
    """Per-time informations for the times of each group, (S, n_times, p, p), at each θ row of the
    criterion (S = 1 unless robust), from one model-program call."""
    runner = fixed_runner(problem, Design(groups=list(groups)))
    prog = model_program(runner.setup, problem.ctx, "elements")
    E, ok = prog(jnp.asarray(criterion_thetas(problem)), *runner._model_args(np.zeros(0)))
    if not bool(np.all(np.asarray(ok))):
        raise SolverError(
            "The information of the candidate times could not be computed (the solver failed or the "
            "noise model is degenerate at some candidate); remove those candidates."
        )
    return [np.asarray(e) for e in E]


def _optimize_exchange(problem: Problem, st: _Structure, start_sel, opts, rng):
    """Fedorov-type exchange over candidate grids: returns (selection per group, utility, records,
    evaluations, converged)."""
    space, choice = st.space, st.choice
    groups = space.groups
    n_cand = [len(gs.candidates) if gs.candidates is not None else 0 for gs in groups]
    E = candidate_elements(
        problem,
        [
            Group(
                np.concatenate(
                    [
                        np.asarray(gs.candidates or [], dtype=float),
                        np.asarray(gs.fixed_times, dtype=float),
                    ]
                ),
                choice.outputs[g],
                st.setup.groups[g].doses,
                1,
            )
            for g, gs in enumerate(groups)
        ],
    )
    n = st.n_base
    th = jnp.asarray(criterion_thetas(problem))
    mat = matrix_program(problem.crit, problem.ctx, batched=True)

    def batch(Fs, th):
        return mat(Fs, th)[0]

    base = np.broadcast_to(problem.prior, (E[0].shape[0], *problem.prior.shape)).copy()
    for g in range(len(groups)):
        base += n[g] * E[g][:, n_cand[g] :].sum(axis=1)
    cands = [np.asarray(gs.candidates or [], dtype=float) for gs in groups]

    def total(sel):
        F = base.copy()
        for g in range(len(groups)):
            if len(sel[g]):
                F += n[g] * E[g][:, np.asarray(sel[g], dtype=int)].sum(axis=1)
        return F

    def run(sel):
        sel = [list(s) for s in sel]
        F = total(sel)
        u = float(batch(jnp.asarray(F[None]), th)[0])
        u_start, hist, iters, evals = u, [u], 0, 1
        improved = True
        while improved and iters < opts["max_iter"]:
            iters += 1
            moves, blocks = [], []
            for g, gs in enumerate(groups):
                c = cands[g]
                for a, i in enumerate(sel[g]):
                    others = [sel[g][b] for b in range(len(sel[g])) if b != a]
                    ok = np.ones(c.size, bool)
                    if not gs.replicates:
                        ok[others] = False
                    if gs.min_spacing > 0 and others:
                        gap = np.min(np.abs(c[:, None] - c[others][None, :]), axis=1)
                        ok &= gap >= gs.min_spacing * (1 - 1e-12)
                    ok[i] = False
                    js = np.flatnonzero(ok)
                    if js.size:
                        delta = n[g] * (E[g][:, js] - E[g][:, [i]])  # (S, m, p, p)
                        blocks.append(F[None] + np.moveaxis(delta, 1, 0))
                        moves.extend((g, a, int(j)) for j in js)
            if not moves:
                break
            us = np.asarray(batch(jnp.asarray(np.concatenate(blocks)), th))
            evals += len(moves)
            us = np.where(np.isfinite(us), us, -np.inf)
            k = int(np.argmax(us))
            improved = bool(us[k] > u + opts["tol"] * max(1.0, abs(u)))
            if improved:
                g, a, j = moves[k]
                sel[g][a] = j
                F = total(sel)
                u = float(us[k])
                hist.append(u)
        converged = not improved
        record = StartRecord(
            np.zeros(0),
            _sel_times(groups, sel),
            u_start,
            u,
            iters,
            evals,
            converged,
            "no improving exchange" if converged else "max_iter reached",
            np.asarray(hist),
        )
        return sel, u, record

    starts = [start_sel]
    starts += [_random_selection(groups, choice.counts, rng) for _ in range(opts["n_starts"] - 1)]
    best, records, total_evals = None, [], 0
    for s in starts:
        sel, u, rec = run(s)
        rec = StartRecord(
            _sel_times(groups, s), rec.end, rec.start_utility, rec.end_utility, rec.iterations,
            rec.evaluations, rec.converged, rec.message, rec.history,
        )  # fmt: skip
        total_evals += rec.evaluations
        records.append(rec)
        if best is None or u > best[1]:
            best = (sel, u, rec)
    return best[0], best[1], tuple(records), total_evals, best[2].converged


def _sel_times(groups, sel) -> np.ndarray:
    parts = [
        np.asarray(gs.candidates)[np.asarray(s, dtype=int)]
        for gs, s in zip(groups, sel, strict=True)
        if len(s)
    ]
    return np.concatenate(parts) if parts else np.zeros(0)


def _random_selection(groups, counts, rng) -> list[list[int]]:
    out = []
    for gs, k in zip(groups, counts, strict=True):
        if k == 0:
            out.append([])
            continue
        c = np.asarray(gs.candidates)
        if gs.replicates:
            out.append(sorted(rng.integers(0, c.size, k).tolist()))
            continue
        chosen: list[int] = []
        for j in rng.permutation(c.size):
            if (
                all(abs(c[j] - c[i]) >= gs.min_spacing * (1 - 1e-12) for i in chosen)
                and j not in chosen
            ):
                chosen.append(int(j))
            if len(chosen) == k:
                break
        if len(chosen) < k:
            chosen = _spread_indices(c, k, gs.min_spacing, False).tolist()
        out.append(sorted(chosen))
    return out


def _nearest_selection(groups, counts, times) -> list[list[int]]:
    out = []
    for gs, k, t in zip(groups, counts, times, strict=True):
        if k == 0:
            out.append([])
            continue
        c = np.asarray(gs.candidates)
        chosen: list[int] = []
        for x in np.asarray(t, dtype=float):
            order = np.argsort(np.abs(c - x))
            for j in order:
                if gs.replicates or int(j) not in chosen:
                    chosen.append(int(j))
                    break
        out.append(sorted(chosen))
    return out


# -- the entry point ------------------------------------------------------------------------------------


def _as_space(space: Any) -> DesignSpace:
    if isinstance(space, DesignSpace):
        return space
    if isinstance(space, GroupSpace):
        return DesignSpace(groups=[space])
    raise DesignError(
        f"The 'space' argument must be a DesignSpace (e.g. DesignSpace(n_times=4, bounds=(0, 24))). "
        f"Got {describe(space)}."
    )


def _initial_start(space: DesignSpace, initial: Any, choices: list[_Choice]):
    """(choice, start dict) for the initial design: the user's, or evenly spread times."""
    if initial is None:
        choice = choices[-1] if space.budget is None else choices[0]
        # The default: the most samples (no budget), evenly spread; equal budget shares.
        choice = max(choices, key=lambda c: sum(c.counts)) if space.budget is None else choice
        times = [_even_times(gs, k) for gs, k in zip(space.groups, choice.counts, strict=True)]
        doses = [[GroupSpace._dose_value(d) for d in gs.doses] for gs in space.groups]
        doses = [
            [_clip_dose(v, gs.dose_bounds[i]) if v is not None else None for i, v in enumerate(dv)]
            for gs, dv in zip(space.groups, doses, strict=True)
        ]
        if space.budget is not None:
            G = len(space.groups)
            n = [max(1, int(space.budget / G // space.cost(g, choice.counts[g]))) for g in range(G)]
        else:
            n = [gs.n for gs in space.groups]
        return choice, {"times": times, "doses": doses, "n": n}
    design = as_design(initial.design if isinstance(initial, DesignResult) else initial)
    if len(design.groups) != len(space.groups):
        raise DesignError(
            f"The 'initial' design has {len(design.groups)} group(s); the design space has "
            f"{len(space.groups)}."
        )
    counts, outputs, levels, times, doses, ns = [], [], [], [], [], []
    for gi, (g, gs) in enumerate(zip(design.groups, space.groups, strict=True)):
        t = list(np.asarray(g.times, dtype=float))
        for f in gs.fixed_times:
            hit = [i for i, x in enumerate(t) if abs(x - f) <= 1e-12 * max(1.0, abs(f))]
            if not hit:
                raise DesignError(
                    f"The 'initial' design's group {gi} lacks the fixed time {f:g} of the design space."
                )
            t.pop(hit[0])
        if len(t) not in gs.n_times:
            raise DesignError(
                f"The 'initial' design's group {gi} has {len(t)} free time(s); the design space "
                f"allows n_times={list(gs.n_times)}."
            )
        counts.append(len(t))
        times.append(np.asarray(t))
        out = g.outputs if gs.output_options is not None else gs.outputs
        if gs.output_options is not None and out not in gs.output_options:
            raise DesignError(
                f"The 'initial' design's group {gi} measures {out}, not one of the output options "
                f"{[list(o) for o in gs.output_options]}."
            )
        outputs.append(out)
        if len(g.doses) != len(gs.doses):
            raise DesignError(
                f"The 'initial' design's group {gi} has {len(g.doses)} dose(s); the design space "
                f"has {len(gs.doses)}."
            )
        dv = [GroupSpace._dose_value(d) for d in g.doses]
        lv = tuple((dv[i] if gs.dose_levels[i] is not None else None) for i in range(len(gs.doses)))
        for i, v in enumerate(lv):
            if v is not None and v not in gs.dose_levels[i]:
                raise DesignError(
                    f"The 'initial' design's dose {i} of group {gi} is {v:g}, not one of the "
                    f"levels {list(gs.dose_levels[i])}."
                )
        levels.append(lv)
        doses.append(
            [_clip_dose(v, gs.dose_bounds[i]) if v is not None else None for i, v in enumerate(dv)]
        )
        ns.append(g.n)
    choice = _Choice(tuple(counts), tuple(outputs), tuple(levels))
    return choice, {"times": times, "doses": doses, "n": ns}


def _clip_dose(v: float, bounds: tuple[float, float] | None) -> float:
    return v if bounds is None else float(np.clip(v, *bounds))


def _template(space: DesignSpace) -> Design:
    """Any design of the space (for names and validation of the problem)."""
    groups = []
    for gs in space.groups:
        k = max(gs.n_times)
        t = np.concatenate([_even_times(gs, k), np.asarray(gs.fixed_times, dtype=float)])
        groups.append(
            Group(
                t if t.size else [0.0],
                gs.output_choices[0],
                _dose_amounts(gs, tuple(None for _ in gs.doses), None),
                1,
            )
        )
    return Design(groups=groups)


def _evaluate_x(problem: Problem, st: _Structure, x: np.ndarray) -> Evaluation:
    """The criterion of the design x of a structure, with the structure's (cached) programs."""
    u, v, F, ok, _ = st.runner(problem).grad(x)
    return verdict(problem, problem.crit, u, v, F, ok)


def _integer_groups(problem: Problem, st: _Structure, x: np.ndarray, opts):
    """Integer group sizes from the optimal budget shares, then the other variables again with the
    sizes held (their bounds pinned): (x, n, converged)."""
    G = st.layout.n_groups
    n_int = _round_allocation(st.layout.shares(x), st.layout.costs, st.layout.budget)
    if np.all(n_int == 0):
        raise DesignError("The budget does not pay for a single subject.")
    x = x.copy()
    x[-G:] = n_int * np.asarray(st.layout.costs) / st.layout.budget
    bounds = list(st.bounds)
    for j in range(G):
        bounds[st.layout.size - G + j] = (x[st.layout.size - G + j],) * 2
    runner = st.runner(problem)

    def fun_grad(xx):
        uu, _, _, _, g = runner.grad(xx)
        return uu, g

    x2, conv, *_ = _slsqp(fun_grad, x, bounds, st.A, st.b, None, opts["max_iter"], opts["tol"])
    return x2, n_int, conv


def optimize_design(
    model: Any,
    theta: Any,
    space: Any,
    criterion: Any = "D",
    *,
    noise: Any = None,
    scale: str | None = None,
    params: Sequence[str] | None = None,
    prior: FisherInformation | None = None,
    initial: Any = None,
    n_starts: int = 10,
    n_screen: int | None = None,
    max_iter: int = 200,
    tol: float = 1e-10,
    seed: int = 0,
) -> DesignResult | PetabDesignResult:
    """The design in `space` that optimises `criterion` for `model` at `theta`.

    A `PetabProblem` (from `load_petab`) with a `PetabDesignSpace` chooses new measurement rows
    for the problem (which pairs of condition and observable, at which times), with the
    information of its existing measurements as the prior: ``optimize_design(problem, x,
    PetabDesignSpace(n=4, pairs=[("c1", "obs_a")], bounds=(0, 10)))`` returns a
    `PetabDesignResult` (see `fimkit.oed.petab_design`; `noise`, `initial` and `n_screen` do not
    apply, `scale` defaults to ``"petab"``, the PEtab scales).

    **Arguments:**
    - `model`, `theta`, `noise`, `scale`: as for `fisher_information`.
    - `space`: a `DesignSpace` (or a `GroupSpace`), e.g. ``DesignSpace(n_times=4, bounds=(0, 24))``.
    - `criterion`: ``"D"`` (default), ``"A"``, ``"E"``, ``"ME"``, ``"trace"``, or a criterion object
      (`DsOptimal`, `COptimal`, `Expected`, `ExpectedLogDet`, `ExpectedDet`, …).
    - `params`: the parameters to estimate (default all, noise parameters included); the others are
      known, as `FisherInformation.select` does.
    - `prior`: a `FisherInformation` from earlier experiments about the same parameters, at the same
      θ; it is added to the information of every design.
    - `initial`: the starting design (default: evenly spread times, the given dose amounts).
    - `n_starts`: local searches (multistart): from the initial design and from the best of
      `n_screen` random feasible designs (default 20 per start), which are evaluated in one vmapped
      batch. For candidate grids: random initial selections of the exchange algorithm.
    - `max_iter`, `tol`: limits of each local search (SLSQP iterations and its `ftol` on the
      utility; exchange steps and the relative improvement that counts).
    - `seed`: the random starts are reproducible.

    **Returns:** a `DesignResult`. A space in which every design has a singular information returns
    ``status="infeasible"`` with the undetermined direction(s), rather than raising.
    """
    if is_petab_problem(model):
        from .petab_design import optimize_petab_design

        given = [
            a
            for a, v in (("noise", noise), ("initial", initial), ("n_screen", n_screen))
            if v is not None
        ]
        if given:
            raise FimkitError(
                f"optimize_design for a PEtab problem takes its noise model from the PEtab tables "
                f"and starts from a greedy selection; {given} must not be given."
            )
        return optimize_petab_design(
            model, theta, space, criterion, scale=scale, params=params, prior=prior,
            n_starts=n_starts, max_iter=max_iter, tol=tol, seed=seed,
        )  # fmt: skip
    if noise is None:
        raise FimkitError(
            "optimize_design(model, theta, space, noise=...) needs the noise model: 'noise' is "
            f"missing. Got model {describe(model)}."
        )
    scale = "lin" if scale is None else scale
    t_start = time.perf_counter()
    space = _as_space(space)
    for arg, v, lo in (("n_starts", n_starts, 1), ("max_iter", max_iter, 1)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
            raise FimkitError(
                f"The '{arg}' argument must be an integer >= {lo}. Got {describe(v)}."
            )
    if n_screen is None:
        n_screen = 100 * n_starts if n_starts > 1 else 0
    if isinstance(n_screen, bool) or not isinstance(n_screen, int | np.integer) or n_screen < 0:
        raise FimkitError(
            f"The 'n_screen' argument must be an integer >= 0. Got {describe(n_screen)}."
        )
    if not isinstance(tol, int | float) or not tol > 0:
        raise FimkitError(f"The 'tol' argument must be a number > 0. Got {describe(tol)}.")
    problem = make_problem(model, theta, criterion, noise, scale, params, prior, _template(space))
    choices = _choices(space)
    init_choice, init_start = _initial_start(space, initial, choices)
    opts = {
        "n_starts": int(n_starts),
        "n_screen": int(n_screen),
        "max_iter": int(max_iter),
        "tol": float(tol),
    }
    rng = np.random.default_rng(seed)

    discrete = space.discrete
    init_st = _structure(problem, space, init_choice, init_start)
    init_x = _x_of(init_st, init_start)
    init_design = init_st.design(init_x, init_st.n_base)
    if discrete:
        init_eval = evaluate(problem, init_design)[0]
    else:
        init_eval = _evaluate_x(problem, init_st, init_x)

    best = None  # (utility, structure, x or selection, records, converged)
    n_evals = 1
    for choice in choices:
        start = init_start if choice == init_choice else None
        st = _structure(problem, space, choice, start)
        if discrete:
            times = (
                init_start["times"]
                if start is not None
                else [_even_times(gs, k) for gs, k in zip(space.groups, choice.counts, strict=True)]
            )
            start_sel = _nearest_selection(space.groups, choice.counts, times)
            payload, u, records, ev, conv = _optimize_exchange(problem, st, start_sel, opts, rng)
        else:
            x0 = _x_of(st, start)
            payload, u, records, ev, conv = _optimize_continuous(problem, st, x0, opts, rng)
        n_evals += ev
        if best is None or u > best[0]:
            best = (u, st, payload, records, conv)
    u, st, payload, records, conv = best
    if discrete:
        method = "exchange (Fedorov type) on candidate grids, multistart"
        design = _selection_design(st, payload)
        final = evaluate(problem, design)[0]
    else:
        method = "SLSQP with exact forward-mode gradients, multistart"
        x = payload
        n_int = None
        if st.layout.costs is not None and np.isfinite(u):
            x, n_int, conv2 = _integer_groups(problem, st, x, opts)
            conv = conv and conv2
        design = st.design(x, n_int)
        final = _evaluate_x(problem, st, x)
    if discrete:
        message = (
            "The exchange stopped: no swap improves the criterion."
            if conv
            else ("An exchange stopped at its iteration limit; raise max_iter.")
        )
    else:
        message = (
            "Every local search converged."
            if conv
            else ("A local search stopped at its iteration limit; raise max_iter.")
        )
    status = "optimal" if conv else "max_iterations"
    null = None
    if not final.feasible:
        status = "infeasible"
        if not np.isfinite(final.utility):
            design, final = init_design, init_eval
        null = final.null if final.null is not None else init_eval.null
        ident = ""
        if null is not None:
            names = problem.ctx.names
            ident = (
                " The data cannot determine the direction(s) ["
                + "; ".join(format_direction(null[:, j], names) for j in range(null.shape[1]))
                + f"] on the {problem.ctx.scale} scale: fix or drop a parameter along it "
                "(params=...), add samples or outputs that inform it, or add a prior information."
            )
        message = (
            "Every design tried has a singular information (or its criterion "
            f"{problem.crit.label} is not finite).{ident}"
        )
    prov = {
        "design": design.describe(),
        "criterion": problem.crit.label,
        "prior": None if problem.prior_fim is None else "added",
    }
    fim = problem.fim(final.F, prov) if np.all(np.isfinite(final.F)) else None
    init_fim = (
        problem.fim(init_eval.F, {"design": init_design.describe()})
        if np.all(np.isfinite(init_eval.F))
        else None
    )
    return DesignResult(
        design=design,
        value=final.value,
        initial_design=init_design,
        initial_value=init_eval.value,
        criterion=problem.crit,
        fim=fim,
        initial_fim=init_fim,
        status=status,
        message=message,
        method=method,
        choice=st.choice.describe(),
        history=records,
        n_evaluations=n_evals,
        seconds=time.perf_counter() - t_start,
        null_directions=null,
        context=problem.ctx,
        _problem=problem,
        _space=space,
    )


def _selection_design(st: _Structure, sel) -> Design:
    groups = []
    for g, gs in enumerate(st.space.groups):
        c = np.asarray(gs.candidates if gs.candidates is not None else [], dtype=float)
        t = np.concatenate(
            [c[np.asarray(sel[g], dtype=int)], np.asarray(gs.fixed_times, dtype=float)]
        )
        groups.append(
            Group(np.sort(t), st.choice.outputs[g], st.setup.groups[g].doses, int(st.n_base[g]))
        )
    return Design(groups=groups)


# -- plotting -------------------------------------------------------------------------------------------


def _plot_design(result: DesignResult, ax: Any, n_points: int):
    from matplotlib.figure import Figure

    from ..prediction import sensitivities

    problem = result._problem
    ctx = problem.ctx
    panels = []
    for gi, g in enumerate(result.design.groups):
        times = np.asarray(g.times)
        gs = _space_group(result, gi)
        lo_hi = [times.min(), times.max()]
        if gs is not None:
            lo_hi += [b for bb in gs.time_bounds(max(max(gs.n_times), 1)) for b in bb]
            lo_hi += list(gs.fixed_times)
        lo, hi = min(lo_hi), max(lo_hi)
        grid = np.linspace(max(lo, getattr(problem.model, "t0", 0.0)), hi, n_points)
        outs = g.outputs if g.outputs is not None else problem.model.outputs
        S = sensitivities(
            problem.model, problem.theta, Design(times=grid, outputs=outs, doses=g.doses)
        )
        S = S.reshape(grid.size, len(outs), -1)
        model_names = problem.model.params
        for oi, out in enumerate(outs):
            panels.append((gi, out, grid, S[:, oi, :], model_names, times))
    if ax is not None and len(panels) == 1:
        fig, axes = ax.figure, [ax]
    else:
        fig = Figure(figsize=(7, 2.6 * len(panels) + 0.4), layout="constrained")
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    init = result.initial_design
    for a, (gi, out, grid, S, model_names, times) in zip(axes, panels, strict=True):
        for j, name in enumerate(model_names):
            if name not in ctx.names:
                continue
            s = S[:, j] * (problem.theta[j] if ctx.scale == "log" else 1.0)
            a.plot(grid, s, label=f"∂{out}/∂{'log ' if ctx.scale == 'log' else ''}{name}")
        for t in times:
            a.axvline(t, color="k", linewidth=1.2)
        if gi < len(init.groups):
            for t in init.groups[gi].times:
                a.axvline(t, color="0.6", linestyle="--", linewidth=0.8)
        a.axhline(0, color="0.8", linewidth=0.6)
        a.set_xlabel("time")
        a.set_ylabel("sensitivity")
        a.set_title(
            f"group {gi}, output {out}: optimal (solid) and initial (dashed) times", fontsize=9
        )
        a.legend(fontsize=7, ncol=2)
    return fig


def _space_group(result: DesignResult, gi: int) -> GroupSpace | None:
    space = result._space
    if space is None:
        return None
    # Groups with 0 subjects are dropped from the design; match by position when sizes agree.
    return space.groups[gi] if gi < len(space.groups) else None


__all__ = ["DesignResult", "StartRecord", "optimize_design"]
