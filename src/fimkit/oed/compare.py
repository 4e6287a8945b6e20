"""Comparing designs, and the gradient of a criterion with respect to a design.

`evaluate_design` puts the criteria of several candidate designs side by side in one table, with
their efficiencies relative to the first; a design whose information is singular is reported as
infeasible with the direction the data cannot determine. `design_gradient` gives the exact derivative
of a criterion with respect to every sampling time and dose amount of a design (forward-mode
automatic differentiation through the model and the ODE solve): how much moving a sample would gain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..design import Design, Group, as_design
from ..errors import DesignError, FimkitError, SingularFIMError
from ..information.fim import FisherInformation, format_direction
from ..prediction import Setup
from ..report.tables import Summary, Table, fmt
from ._engine import Layout, Runner, evaluate, make_problem, verdict
from .criteria import Criterion, as_criterion
from .optimize import DesignResult, _safe_se
from .robust import RobustCriterion
from .space import GroupSpace

# -- the gradient of a criterion with respect to a design -------------------------------------------


@dataclass(frozen=True)
class DesignGradient:
    """A criterion of a design and its exact derivatives with respect to the design (`design_gradient`).

    **Fields:** `value` (the criterion), `times` (per group, ∂value/∂t for each sampling time, in the
    group's order), `doses` (per group, ∂value/∂amount for each dose with a numeric amount, in dose
    order, None for doses whose amount is a parameter), `criterion`.
    """

    value: float
    times: tuple[np.ndarray, ...]
    doses: tuple[tuple[float | None, ...], ...]
    criterion: Any


def design_gradient(
    model: Any,
    theta: Any,
    design: Any,
    criterion: Any = "D",
    *,
    noise: Any,
    scale: str = "lin",
    params: Sequence[str] | None = None,
    prior: FisherInformation | None = None,
) -> DesignGradient:
    """The value of `criterion` for `design` and its exact gradient with respect to every sampling
    time and numeric dose amount: forward-mode automatic differentiation through the model and the
    ODE solve, as the optimiser uses it. Arguments as for `evaluate_design`.
    """
    design = as_design(design.design if isinstance(design, DesignResult) else design)
    problem = make_problem(model, theta, criterion, noise, scale, params, prior, design)
    groups, tb, slots = [], [], []
    # The anchor (see _engine) past the last time; rounded, so that small moves of the times (finite
    # differences) leave it, and the end of the solve, where it is.
    top = float(np.ceil(1.25 * max(float(np.max(g.times)) for g in design.groups) + 1.0))
    for gi, g in enumerate(design.groups):
        full = np.concatenate([np.asarray(g.times, dtype=float), [top]])
        tb.append(full)
        groups.append(Group(full, g.outputs, g.doses, 1))
        k = 0
        for d in g.doses:
            if GroupSpace._dose_value(d) is not None:
                slots.append((gi, k))
                k += 1
    setup = Setup.build(problem.model, Design(groups=groups), problem.noise)
    layout = Layout(
        tuple(g.times.size for g in design.groups),
        tuple(v.size for v in setup.dose_values),
        tuple(slots),
        anchor=True,
    )
    x = np.concatenate(
        [np.asarray(g.times, dtype=float) for g in design.groups]
        + [np.asarray([setup.dose_values[gi][vi]]) for gi, vi in slots]
    )
    nb = np.asarray([g.n for g in design.groups], dtype=float)
    runner = Runner(problem, setup, layout, tuple(tb), tuple(setup.dose_values), nb)
    u, v, F, ok, g = runner.grad(x)
    ev = verdict(problem, problem.crit, u, v, F, ok)
    if not ev.feasible:
        null = ev.null
        where = (
            ""
            if null is None
            else " along "
            + "; ".join(
                format_direction(null[:, j], problem.ctx.names) for j in range(null.shape[1])
            )
        )
        raise SingularFIMError(
            f"The criterion {problem.crit.label} of this design is not defined: its information is "
            f"singular{where} (or the solve failed).",
            null_directions=null,
        )
    # ∂value/∂x = ∂utility/∂x / (d utility / d value).
    dudv = float(jax.grad(problem.crit.to_utility)(jnp.asarray(float(v))))
    g = np.asarray(g) / dudv
    out_t, pos = [], 0
    for grp in design.groups:
        out_t.append(g[pos : pos + grp.times.size])
        pos += grp.times.size
    out_d = []
    for grp in design.groups:
        vals = []
        for d in grp.doses:
            if GroupSpace._dose_value(d) is None:
                vals.append(None)
            else:
                vals.append(float(g[pos]))
                pos += 1
        out_d.append(tuple(vals))
    return DesignGradient(float(v), tuple(out_t), tuple(out_d), problem.crit)


# -- comparing designs ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DesignComparison:
    """Criteria of several designs side by side (`evaluate_design`).

    **Fields:** `labels`; `criteria` (objects); `values` (designs × criteria; NaN where a design is
    infeasible for a criterion); `efficiency` (relative to the first design, by each criterion's
    formula); `feasible` (per design: its information is invertible); `null_directions` (per design,
    None or the undetermined directions); `fims` (per design, prior included); `designs`.
    """

    labels: tuple[str, ...]
    designs: tuple[Design, ...]
    criteria: tuple[Any, ...]
    values: np.ndarray
    efficiency: np.ndarray
    feasible: tuple[bool, ...]
    null_directions: tuple[np.ndarray | None, ...]
    fims: tuple[FisherInformation | None, ...]

    def value(self, label: str, criterion: str) -> float:
        """The value of one criterion (by label, e.g. ``"D"``) for one design."""
        i = self._label_index(label)
        labels = [c.label for c in self.criteria]
        if criterion not in labels:
            raise FimkitError(f"Unknown criterion {criterion!r}; the criteria are {labels}.")
        return float(self.values[i, labels.index(criterion)])

    def _label_index(self, label: str) -> int:
        if label not in self.labels:
            raise FimkitError(f"Unknown design {label!r}; the designs are {list(self.labels)}.")
        return self.labels.index(label)

    def summary(self) -> Summary:
        cols = ["design", "n obs"]
        for c in self.criteria:
            cols.append(f"{c.label} ({'max' if c.maximize else 'min'})")
        cols += [f"eff {c.label}" for c in self.criteria]
        rows = []
        notes = []
        for i, lab in enumerate(self.labels):
            row = [lab, str(self.designs[i].n_observations)]
            row += [fmt(v, 6) for v in self.values[i]]
            row += [fmt(e, 4) for e in self.efficiency[i]]
            rows.append(tuple(row))
            null = self.null_directions[i]
            if null is not None and self.fims[i] is not None:
                for j in range(null.shape[1]):
                    notes.append(
                        f"{lab}: singular information (infeasible), not identifiable along "
                        + format_direction(null[:, j], self.fims[i].names)
                    )
        notes.append(f"efficiency relative to {self.labels[0]!r} (> 1: better)")
        tables = [Table("Design comparison", tuple(cols), tuple(rows), tuple(notes))]
        names = next((F.names for F in self.fims if F is not None), ())
        se_rows = []
        for n in names:
            r = [n]
            for F in self.fims:
                r.append(fmt(_safe_se(F).get(n, np.nan)) if F is not None else "-")
            se_rows.append(tuple(r))
        if names:
            tables.append(
                Table("Cramér–Rao standard errors", ("parameter", *self.labels), tuple(se_rows))
            )
        return Summary(tuple(tables))

    def __str__(self) -> str:
        return str(self.summary())

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()


def evaluate_design(
    model: Any,
    theta: Any,
    designs: Any,
    criteria: Any = ("D", "A", "E", "ME"),
    *,
    noise: Any,
    scale: str = "lin",
    params: Sequence[str] | None = None,
    prior: FisherInformation | None = None,
) -> DesignComparison:
    """Criteria of candidate designs side by side, in one table.

    **Arguments:**
    - `designs`: a design, a list of designs, or a dict label → design (a `Design`, `Group`, list of
      times or `DesignResult`).
    - `criteria`: names or criterion objects (robust ones included).
    - the rest as for `optimize_design`.

    **Returns:** a `DesignComparison`; ``print`` it for the table. A design whose information is
    singular is reported as infeasible with the undetermined direction (NaN values), not an error.
    """
    if isinstance(designs, Mapping):
        labels = [str(k) for k in designs]
        items = list(designs.values())
    elif isinstance(designs, Design | Group | DesignResult):
        labels, items = ["design 1"], [designs]
    else:
        items = list(designs)
        if items and all(isinstance(x, int | float | np.number) for x in items):
            items = [items]  # a single list of times
        labels = [f"design {i + 1}" for i in range(len(items))]
    if not items:
        raise DesignError("The 'designs' argument of evaluate_design is empty.")
    ds = tuple(as_design(d.design if isinstance(d, DesignResult) else d) for d in items)
    if isinstance(criteria, str | Criterion | RobustCriterion):
        criteria = [criteria]
    crits = tuple(as_criterion(c) for c in criteria)
    problem = make_problem(model, theta, crits[0], noise, scale, params, prior, ds[0])
    crits = tuple(c.bind(problem.ctx) for c in crits)
    values = np.full((len(ds), len(crits)), np.nan)
    feas, nulls, fims = [], [], []
    for i, d in enumerate(ds):
        evs = evaluate(problem, d, crits)
        values[i] = [e.value for e in evs]
        F = evs[0].F
        fi = problem.fim(F, {"design": d.describe()}) if np.all(np.isfinite(F)) else None
        fims.append(fi)
        singular = fi is None or fi.rank() < fi.size
        feas.append(not singular and all(e.ok for e in evs))
        nulls.append(None if fi is None or not singular else fi.null_space())
    eff = np.full_like(values, np.nan)
    for j, c in enumerate(crits):
        for i in range(len(ds)):
            if np.isfinite(values[i, j]) and np.isfinite(values[0, j]):
                eff[i, j] = c.efficiency(values[i, j], values[0, j], problem.ctx)
    return DesignComparison(
        tuple(labels), ds, crits, values, eff, tuple(feas), tuple(nulls), tuple(fims)
    )


__all__ = ["DesignComparison", "DesignGradient", "design_gradient", "evaluate_design"]
