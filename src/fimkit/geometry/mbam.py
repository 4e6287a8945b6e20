"""The manifold boundary approximation method (MBAM): one model-reduction step, end to end.

Transtrum and Qiu (PRL 113, 098701, 2014): the predictions of a sloppy model form a manifold with
edges, and the edges are simpler models. Starting from θ, follow the geodesic of the Fisher metric
(in log parameters) along the sloppiest eigen-direction of the information until the metric
degenerates; read off which parameters, or which combination, went to a limit — one to 0 or ∞, two
merging, a ratio fixed while both run off — and write the model in that limit, with one parameter
fewer. Refitting it to the full model's predictions says how much of the fit the reduction costs.

For a `SymbolicModel` the limit is taken in the equations with sympy — two parameters merging, one
going to 0 or ∞, a ratio fixed while both go to 0 or ∞ — and the reduced model is again a
`SymbolicModel`. For an `AnalyticModel` or `ODEModel` the limit is substituted into the model's
functions, which is exact for a merge (θj := θi) and for a parameter at 0; a limit at ∞ or a fixed
ratio is then reported in words and numbers without a reduced model.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import FimkitError, describe
from ..information.fim import format_direction
from ..models.analytic import AnalyticModel
from ..models.ode import ODEModel
from ..prediction import Setup
from ..report.tables import Summary, Table, fmt
from .paths import (
    BOUNDARY_REASONS,
    Geodesic,
    _check_form,
    check_start,
    geodesic,
    initial_acceleration,
    least_squares_noise,
)

DIRECTIONS = ("accelerating", "both", 1, -1)
# A parameter belongs to the limit when its share of the final velocity (log coordinates) is at
# least this fraction of the largest share.
_LOADING = 0.3
# Two rates "merge" when their log-difference at the boundary is below this fraction of its start;
# a ratio is "fixed" when the change of its log is below this fraction of the parameters' own change.
_MERGE_FRACTION = 0.25
_RATIO_FRACTION = 0.25
# Merges are searched among monomials with exponents in {-1, 0, 1}: 3^p candidates.
_MAX_MERGE_PARAMS = 10

MERGE = "merge"
ZERO = "zero"
INFINITY = "infinity"
RATIO = "ratio"
COMBINATION = "combination"


@dataclass(frozen=True)
class BoundaryLimit:
    """The limit the geodesic ran into, in words and numbers.

    **Fields:**
    - `kind`: ``"merge"`` (a monomial Π θ_i^e_i tends to 1: two parameters become equal, or one
      becomes equal to a combination of others), ``"zero"``, ``"infinity"``, ``"ratio"`` (two run
      to 0 or ∞ together with their ratio fixed), or ``"combination"`` (a general combination of
      log parameters, `direction`).
    - `parameters`: the names involved (for a merge, the eliminated one first).
    - `description`: one sentence with the numbers.
    - `start`, `end`: their values at the start and at the boundary.
    - `direction`: the unit velocity at the end, in log coordinates, over all parameters.
    - `value`: the limiting ratio (``"ratio"``), the common value of two merging parameters;
      else None.
    - `exponents`: the integer exponents of the monomial (``"merge"``: it tends to 1; ``"ratio"``:
      it stays fixed), by name; None for the other kinds.
    - `boundary`: the involved parameters projected onto the limit (the monomial set exactly to 1
      for a merge), a start for refitting the reduced model; None for the other kinds.
    """

    kind: str
    parameters: tuple[str, ...]
    description: str
    start: dict[str, float]
    end: dict[str, float]
    direction: np.ndarray = field(repr=False)
    value: float | None = None
    exponents: dict[str, int] | None = None
    boundary: dict[str, float] | None = None


@dataclass(frozen=True, eq=False)
class MBAMResult:
    """One MBAM step: the geodesic to the boundary, the limit, and the reduced model's refit.

    **Fields:**
    - `names`, `theta` (the start, linear scale), `eigenvalues` (of the information about log θ,
      ascending), `velocity0` (the initial direction: the sloppiest unit eigenvector, log coordinates).
    - `geodesic`: the `Geodesic` followed; `alternative`: the other direction's (``direction="both"``).
    - `limit`: the `BoundaryLimit` found at its end.
    - `reduced_model`: the model in the limit, of the full model's type (None when no standard
      reduction applies; `notes` says why); `substitution`: how it was obtained, in words.
    - `refit`: the `FitResult` of the reduced model fitted to the full model's predictions (None
      when not done); `reduced_params`: its estimate.
    - `chi2`: Σ ((full − reduced)/σ)² at the refit (twice the log-likelihood lost), `chi2_boundary`:
      the same at the boundary point before the refit, `n_observations`, `p_value`: the chance of
      a χ² with one degree of freedom above `chi2` (large: this design cannot tell the two apart).
    - `notes`: what else the user should know (warnings of the refit, skipped steps).
    """

    names: tuple[str, ...]
    theta: np.ndarray
    eigenvalues: np.ndarray
    velocity0: np.ndarray
    geodesic: Geodesic
    alternative: Geodesic | None
    limit: BoundaryLimit
    reduced_model: Any
    substitution: str | None
    refit: Any
    reduced_params: dict[str, float] | None
    chi2: float | None
    chi2_boundary: float | None
    n_observations: int
    p_value: float | None
    notes: tuple[str, ...]

    @property
    def reached_boundary(self) -> bool:
        return self.geodesic.reason in BOUNDARY_REASONS

    def summary(self) -> Summary:
        geo = self.geodesic
        rows = tuple(
            (n, fmt(self.theta[j]), fmt(geo.theta[-1, j]), fmt(self.velocity0[j]))
            for j, n in enumerate(self.names)
        )
        path_notes = [
            f"sloppiest eigenvalue of the information about log θ: {self.eigenvalues[0]:.4g} "
            f"(largest {self.eigenvalues[-1]:.4g})",
            f"geodesic: {geo.message}; arc length {geo.distance:.4g}",
            f"limit: {self.limit.description}",
        ]
        tables = [
            Table(
                "MBAM: geodesic to the boundary",
                ("parameter", "start", "boundary", "v0 (log)"),
                rows,
                tuple(path_notes),
            )
        ]
        if self.reduced_model is not None:
            red_rows = tuple((n, fmt(v)) for n, v in (self.reduced_params or {}).items())
            fit_notes = [f"reduced model: {self.substitution}"]
            if _is_symbolic(self.reduced_model):
                fit_notes += str(self.reduced_model).splitlines()[1:]
            if self.chi2 is not None:
                fit_notes.append(
                    f"fit of reduced vs full ({self.n_observations} observations): χ² = "
                    f"{self.chi2:.4g} at the refit ({self.chi2_boundary:.4g} at the boundary point), "
                    f"RMS {math.sqrt(self.chi2 / self.n_observations):.3g} σ; likelihood-ratio "
                    f"p-value {self.p_value:.3g} (1 d.f.)"
                )
            fit_notes += list(self.notes)
            tables.append(
                Table(
                    "Reduced model refitted to the full model's predictions",
                    ("parameter", "estimate"),
                    red_rows,
                    tuple(fit_notes),
                )
            )
        elif self.notes:
            tables.append(Table("Reduced model", ("note",), tuple((n,) for n in self.notes)))
        return Summary(tuple(tables))

    def __str__(self) -> str:
        return str(self.summary())


# -- reading the limit ------------------------------------------------------------------------------
def _monomials(p: int) -> np.ndarray:
    """Exponent vectors in {-1, 0, 1}^p with at least two non-zeros, the first non-zero +1."""
    grid = np.array(list(itertools.product((-1, 0, 1), repeat=p)), dtype=float)
    nonzero = grid != 0
    first = grid[np.arange(grid.shape[0]), np.argmax(nonzero, axis=1)]
    return grid[(nonzero.sum(axis=1) >= 2) & (first > 0)]


def _monomial_text(exponents: dict[str, int]) -> str:
    top = [n for n, e in exponents.items() if e > 0]
    bottom = [n for n, e in exponents.items() if e < 0]
    text = "·".join(top) or "1"
    return text + (
        f"/{bottom[0]}" if len(bottom) == 1 else f"/({'·'.join(bottom)})" if bottom else ""
    )


def _find_merge(names, x0, x1, v):
    """The monomial Π θ^c (c in {-1, 0, 1}) that tends to 1 at the boundary, if one does.

    It must have been away from 1 at the start (|c·log θ| ≥ 0.05), have come within
    `_MERGE_FRACTION` of 1 on the log scale relative to its start, and change fastest along the
    final velocity (|c·v| ≥ ½ |c|): the geodesic is running into the fold where it equals 1.
    """
    if len(names) > _MAX_MERGE_PARAMS:
        return None
    c = _monomials(len(names))
    at0, at1 = c @ x0, c @ x1
    aligned = np.abs(c @ v) >= 0.5 * np.linalg.norm(c, axis=1)
    ok = (np.abs(at0) >= 0.05) & (np.abs(at1) <= _MERGE_FRACTION * np.abs(at0)) & aligned
    if not ok.any():
        return None
    idx = np.flatnonzero(ok)
    best = idx[np.argmin(np.abs(at1[idx]) / np.abs(at0[idx]))]
    return c[best].astype(int)


def classify_limit(geo: Geodesic) -> BoundaryLimit:
    """Which parameters, or which combination, went to which limit at the end of `geo` (log scale)."""
    if geo.scale != "log":
        raise FimkitError(
            f"classify_limit reads limits in log coordinates; the geodesic has scale {geo.scale!r}."
        )
    names = geo.names
    th0, th1 = geo.theta[0], geo.theta[-1]
    x0, x1 = np.log(th0), np.log(th1)
    v = geo.velocity[-1] / np.linalg.norm(geo.velocity[-1])
    order = np.argsort(-np.abs(v))
    involved = [int(j) for j in order if abs(v[j]) >= _LOADING * abs(v[order[0]])]

    def limit(kind, idx, text, value=None, exponents=None, boundary=None):
        return BoundaryLimit(
            kind,
            tuple(names[j] for j in idx),
            text,
            {names[j]: float(th0[j]) for j in idx},
            {names[j]: float(th1[j]) for j in idx},
            v,
            value,
            exponents,
            boundary,
        )

    if len(involved) == 1:
        (j,) = involved
        growth = th1[j] / th0[j]
        if v[j] > 0:
            text = f"{names[j]} → ∞: it grew from {fmt(th0[j])} to {fmt(th1[j])} (×{growth:.3g})"
            return limit(INFINITY, [j], text + " along the geodesic and still rises")
        text = f"{names[j]} → 0: it fell from {fmt(th0[j])} to {fmt(th1[j])} (×{growth:.3g})"
        return limit(ZERO, [j], text + " along the geodesic and still falls")
    c = _find_merge(names, x0, x1, v)
    if c is not None:
        members = [int(j) for j in np.flatnonzero(c)]
        drop = max(members, key=lambda j: abs(v[j]))
        rest = [j for j in members if j != drop]
        # drop = Π rest^(−c_rest / c_drop): the dropped parameter as a monomial of the others.
        solved = {names[j]: int(-c[j] * c[drop]) for j in rest}
        exponents = {names[j]: int(c[j]) for j in members}
        projected = x1 - (c @ x1) / (c @ c) * c
        boundary = {names[j]: float(np.exp(projected[j])) for j in members}
        monomial = _monomial_text(exponents)
        idx = [drop, *rest]
        if len(members) == 2:
            (k,) = rest
            rel = [abs(a[drop] - a[k]) / (0.5 * (a[drop] + a[k])) for a in (th0, th1)]
            common = boundary[names[k]]
            text = (
                f"{names[k]} and {names[drop]} merge ({names[drop]} = {names[k]}): "
                f"{fmt(th0[k])} and {fmt(th0[drop])} at the start ({100 * rel[0]:.3g} % apart), "
                f"{fmt(th1[k])} and {fmt(th1[drop])} at the boundary ({100 * rel[1]:.3g} % apart), "
                f"converging on about {fmt(common)}"
            )
            return limit(MERGE, idx, text, common, exponents, boundary)
        text = (
            f"{names[drop]} merges with {_monomial_text(solved)} ({names[drop]} = "
            f"{_monomial_text(solved)}): {monomial} = {fmt(np.exp(c @ x0))} at the start, "
            f"{fmt(np.exp(c @ x1))} at the boundary, tending to 1; "
            + ", ".join(f"{names[j]} {fmt(th0[j])} → {fmt(th1[j])}" for j in idx)
        )
        return limit(MERGE, idx, text, None, exponents, boundary)
    if len(involved) == 2:
        i, j = sorted(involved)
        gap0, gap1 = x0[i] - x0[j], x1[i] - x1[j]
        d = x1 - x0
        moved = max(abs(d[i]), abs(d[j]))
        together = v[i] * v[j] > 0 and d[i] * v[i] > 0 and d[j] * v[j] > 0
        if together and abs(gap1 - gap0) < _RATIO_FRACTION * moved:
            where = "∞" if v[i] > 0 else "0"
            ratio = float(np.exp(gap1))
            text = (
                f"{names[i]} and {names[j]} → {where} together with {names[i]}/{names[j]} fixed at "
                f"about {fmt(ratio)} ({fmt(np.exp(gap0))} at the start): {names[i]} from "
                f"{fmt(th0[i])} to {fmt(th1[i])}, {names[j]} from {fmt(th0[j])} to {fmt(th1[j])}"
            )
            return limit(RATIO, [i, j], text, ratio, {names[i]: 1, names[j]: -1})
    text = format_direction(v, [f"log {n}" for n in names], digits=2)
    return limit(
        COMBINATION,
        involved,
        f"the combination {text} runs to a limit (it changed by {float(v @ (x1 - x0)):+.3g} "
        "along the geodesic); "
        + ", ".join(f"{names[j]} {fmt(th0[j])} → {fmt(th1[j])}" for j in involved),
    )


# -- the reduced model ------------------------------------------------------------------------------
def _substituted(model: Any, params: list[str], substitute) -> Any:
    """The model with parameters re-expressed by `substitute(p) -> full p` (Analytic or ODE)."""
    name = f"{model.name}_reduced"
    if isinstance(model, AnalyticModel):
        fn = model.fn
        return AnalyticModel(lambda t, p: fn(t, substitute(p)), params, model.outputs, name=name)
    if isinstance(model, ODEModel):
        rhs, observe, y0 = model.rhs, model.observe, model.y0
        return ODEModel(
            lambda t, y, p: rhs(t, y, substitute(p)),
            (lambda p: y0(substitute(p))) if callable(y0) else y0,
            lambda t, y, p: observe(t, y, substitute(p)),
            params=params,
            states=model.states,
            outputs=model.outputs,
            t0=model.t0,
            solver=model.solver_spec,
            rtol=model.rtol,
            atol=model.atol,
            max_steps=model.max_steps,
            name=name,
        )
    return None


def _is_symbolic(model: Any) -> bool:
    from ..models.symbolic import SymbolicModel

    return isinstance(model, SymbolicModel)


def _merge_solution(limit: BoundaryLimit) -> tuple[str, dict[str, int], str, dict[str, float]]:
    """(dropped parameter, its exponents in the others, words, start values of the others)."""
    drop = limit.parameters[0]
    c = limit.exponents
    solved = {n: -e * c[drop] for n, e in c.items() if n != drop}
    expr = _monomial_text(solved)
    words = f"{drop} replaced by {expr} (the merge {drop} = {expr})"
    start = {n: value for n, value in limit.boundary.items() if n != drop}
    return drop, solved, words, start


def reduce_model(model: Any, limit: BoundaryLimit) -> tuple[Any, str | None, dict[str, float]]:
    """(reduced model, what was substituted in words, start values of new or merged parameters).

    - `SymbolicModel`: the limit is taken in the equations (sympy): two parameters merging
      (θj := θi), one going to 0 or ∞ (the limit of every right-hand side, output and initial
      condition), a ratio fixed while both go to 0 or ∞ (θi := c·θj, then θj to its limit, with the
      new parameter c named ``"θi_over_θj"``). The result is a `SymbolicModel`.
    - `AnalyticModel`, `ODEModel`: substitution into the model's functions, exact for a merge and for
      a parameter at 0; the result has the same type.

    The model is None when the limit is a general combination, when a limit of the equations is
    singular (a rate to ∞ with nothing to balance it: a quasi-steady-state reduction, not a
    substitution), or when a black-box model meets a limit at ∞ or a fixed ratio.
    """
    if _is_symbolic(model):
        return _reduce_symbolic(model, limit)
    params = list(model.params)
    if limit.kind == MERGE:
        if any(n not in params for n in limit.parameters):
            return None, None, {}
        drop, solved, words, start = _merge_solution(limit)

        def substitute(p):
            value = 1.0
            for n, e in solved.items():
                value = value * (p[n] if e > 0 else 1.0 / p[n])
            return {**p, drop: value}

        reduced = _substituted(model, [n for n in params if n != drop], substitute)
        return reduced, words, start
    if limit.kind == ZERO:
        (drop,) = limit.parameters

        def substitute(p):
            return {**p, drop: 0.0}

        reduced = _substituted(model, [n for n in params if n != drop], substitute)
        return reduced, f"{drop} set to 0", {}
    return None, None, {}


def _reduce_symbolic(model: Any, limit: BoundaryLimit):
    import sympy

    from ..models.symbolic import SymbolicModel

    params = list(model.params)
    if limit.kind == COMBINATION or any(n not in params for n in limit.parameters):
        return None, None, {}
    sym = model.symbol
    start: dict[str, float] = {}
    if limit.kind == MERGE:
        drop, solved, words, start = _merge_solution(limit)
        value = sympy.Mul(*(sym(n) ** e for n, e in solved.items()))

        def take(e):
            return e.xreplace({sym(drop): value})

        new = [n for n in params if n != drop]
    elif limit.kind in (ZERO, INFINITY):
        (drop,) = limit.parameters
        to = sympy.oo if limit.kind == INFINITY else 0

        def take(e):
            return sympy.limit(e, sym(drop), to, "+" if to == 0 else "-")

        new = [n for n in params if n != drop]
        words = f"the limit {drop} → {'∞' if limit.kind == INFINITY else '0'}"
    else:  # RATIO
        i, j = limit.parameters
        ratio_name = f"{i}_over_{j}"
        # Plain symbols, as the SymbolicModel's own: an assumption would make a different symbol.
        c = sympy.Symbol(ratio_name)
        going = "∞" if limit.direction[params.index(i)] > 0 else "0"
        to = sympy.oo if going == "∞" else 0

        def take(e):
            return sympy.limit(
                e.xreplace({sym(i): c * sym(j)}), sym(j), to, "+" if to == 0 else "-"
            )

        new = [ratio_name if n == i else n for n in params if n != j]
        words = (
            f"{i}, {j} → {going} with {ratio_name} = {i}/{j} fixed ({i} := {ratio_name}·{j}, "
            f"then {j} → {going})"
        )
        start[ratio_name] = float(limit.value)
    try:
        rhs = {s: sympy.simplify(take(e)) for s, e in model.rhs.items()}
        outputs = {o: sympy.simplify(take(e)) for o, e in model.output_exprs.items()}
        ic = {s: (None if e is None else sympy.simplify(take(e))) for s, e in model.ic.items()}
    except (NotImplementedError, ValueError, TypeError):
        return None, f"{words}: sympy could not take the limit of the equations", {}
    exprs = [*rhs.values(), *outputs.values(), *(e for e in ic.values() if e is not None)]
    bad = (sympy.oo, -sympy.oo, sympy.zoo, sympy.nan)
    if any(e.has(*bad) for e in exprs):
        return (
            None,
            f"{words}: the limit of the equations is singular (a term runs off to infinity: a "
            "fast process that needs a quasi-steady-state reduction, not a substitution)",
            {},
        )
    reduced = SymbolicModel(
        rhs,
        outputs,
        new,
        inputs=model.input_exprs,
        ic=ic,
        t0=model.t0,
        name=f"{model.name}_reduced",
    )
    return reduced, words, start


def _data_from(model: Any, theta: np.ndarray, design: Any):
    """The full model's noise-free predictions as `Data` (every subject of a group alike)."""
    from ..data import Data
    from ..prediction import predict

    pred = predict(model, theta[: len(model.params)], design)
    groups = []
    for g, values in zip(design.groups, pred.values, strict=True):
        groups.append((g, np.broadcast_to(values, (g.n, *values.shape)).copy()))
    return Data.from_groups(groups)


# -- the method -------------------------------------------------------------------------------------
def mbam(
    model: Any,
    theta: Any,
    design: Any,
    *,
    noise: Any,
    direction: Any = "accelerating",
    speed_limit: float = 20.0,
    t_end: float = 100.0,
    refit: bool = True,
    rcond: float = 1e-12,
    max_log_change: float = math.log(1e6),
    form: str = "auto",
    n_points: int = 101,
    rtol: float = 1e-8,
    atol: float = 1e-10,
) -> MBAMResult:
    """One step of the manifold boundary approximation method from `theta`.

    **Arguments:**
    - `model`, `design`, `noise`: as for `fisher_information` (parameters must be positive: the
      geodesic runs in log θ).
    - `theta`: the start, usually the best fit (dict or vector over
      ``parameter_names(model, noise)``).
    - `direction`: which way along the sloppiest eigenvector: ``"accelerating"`` (the sign in
      which the parameter speed grows, Transtrum's choice: it finds a boundary fastest),
      ``"both"`` (follow both and keep the one that reaches a boundary at the shorter arc
      length), or ``1`` / ``-1`` (the eigenvector signed so that its largest component is
      positive, or its opposite).
    - `speed_limit`: the boundary is declared when the speed in log parameters has grown by this
      factor (20 as in Transtrum's worked example); `rcond`, `max_log_change`, `t_end`, `form`,
      `n_points`, `rtol`, `atol`: passed to `geodesic`.
    - `refit`: fit the reduced model (when there is one) to the full model's predictions at θ;
      needs least-squares noise (Gaussian or log-normal with known σ).

    **Returns:** an `MBAMResult` (`limit`, `geodesic`, `reduced_model`, `refit`, `chi2`, ...).
    A singular information at θ raises `SingularFIMError` naming the null direction: fix a
    parameter along it first (MBAM reduces sloppy models, not structurally unidentifiable ones).

    A `SymbolicModel` is simulated through its `to_ode()` (default solver options; its unknown
    initial conditions are parameters ``"x(0)"``), and the reduced model is a `SymbolicModel` with
    the limit taken in its equations (see `reduce_model`).
    """
    symbolic = _is_symbolic(model)
    numeric = model.to_ode() if symbolic else model
    setup = Setup.build(numeric, design, noise)
    form = _check_form(form, setup)
    if direction not in DIRECTIONS or isinstance(direction, bool):
        raise FimkitError(
            f"The 'direction' argument of mbam must be one of {list(DIRECTIONS)}. "
            f"Got {describe(direction)}."
        )
    th = setup.theta(theta, positive=True)
    x0 = np.log(th)
    g = check_start(setup, x0, "log", rcond, "mbam")
    w, V = np.linalg.eigh(g)
    v = V[:, 0]
    v = v * np.sign(v[int(np.argmax(np.abs(v)))])
    options = dict(
        noise=setup.noise,
        t_end=t_end,
        scale="log",
        n_points=n_points,
        form=form,
        speed_limit=speed_limit,
        max_log_change=max_log_change,
        rcond=rcond,
        rtol=rtol,
        atol=atol,
    )
    alternative = None
    if direction == "both":
        geos = [geodesic(numeric, th, s * v, design, **options) for s in (1.0, -1.0)]
        reached = [geo.reason in BOUNDARY_REASONS for geo in geos]
        if any(reached):
            k = min((k for k in range(2) if reached[k]), key=lambda k: geos[k].distance)
        else:
            k = 0
        geo, alternative, v0 = geos[k], geos[1 - k], (1.0 if k == 0 else -1.0) * v
    else:
        if direction == "accelerating":
            a = initial_acceleration(setup, x0, v, "log", form)
            v0 = v if float(v @ a) >= 0 else -v
        else:
            v0 = float(direction) * v
        geo = geodesic(numeric, th, v0, design, **options)
    limit = classify_limit(geo)
    notes: list[str] = []
    if geo.reason not in BOUNDARY_REASONS:
        notes.append(
            f"the geodesic did not reach a boundary ({geo.message}); the limit is read from "
            "where it stopped: increase t_end"
        )
    reduced, substitution, start = reduce_model(model, limit)
    if reduced is None:
        if substitution is not None:
            notes.append(f"no reduced model: {substitution}")
        elif symbolic:
            notes.append(
                f"no reduced model: the limit is a general combination ({limit.description}) or "
                "involves an unknown initial condition; no standard reduction applies"
            )
        elif limit.kind in (INFINITY, RATIO, COMBINATION):
            notes.append(
                f"no reduced model: the limit ({limit.kind}) needs the symbolic limit of the "
                "equations (a SymbolicModel); substitution covers two parameters merging and a "
                "parameter going to 0"
            )
        else:
            notes.append(
                f"no reduced model: substitution needs an AnalyticModel or ODEModel, got "
                f"{type(model).__name__}"
            )
    fit_result, reduced_params, chi2, chi2_b, p_value = None, None, None, None, None
    n_obs = int(np.sum(setup.weights()))
    if reduced is not None and refit:
        if not least_squares_noise(setup.noise):
            notes.append(
                f"refit skipped: it needs least-squares noise (Gaussian or log-normal, known σ); "
                f"got {setup.noise}"
            )
        else:
            fit_result, reduced_params, chi2, chi2_b, p_value = _refit(
                numeric, th, setup, reduced.to_ode() if symbolic else reduced, geo, start, notes
            )
    return MBAMResult(
        setup.names,
        th,
        w,
        v0,
        geo,
        alternative,
        limit,
        reduced,
        substitution,
        fit_result,
        reduced_params,
        chi2,
        chi2_b,
        n_obs,
        p_value,
        tuple(notes),
    )


def _refit(model, th, setup, reduced, geo, start, notes):
    from scipy import stats

    from ..inference.fit import fit
    from ..likelihood import loglike

    data = _data_from(model, th, setup.design)
    best = loglike(model, th, data, noise=setup.noise)
    end = dict(zip(setup.names, geo.theta[-1].tolist(), strict=True))
    theta0 = {n: start.get(n, end[n]) for n in reduced.params}
    chi2_b = 2.0 * (best - loglike(reduced, theta0, data, noise=setup.noise))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(reduced, data, noise=setup.noise, theta0=theta0, scale="log")
    for w in caught:
        notes.append(f"refit: {w.message}")
    chi2 = max(2.0 * (best - result.loglike), 0.0)
    p_value = float(stats.chi2.sf(chi2, df=len(setup.names) - len(result.names)))
    return result, result.params, float(chi2), float(max(chi2_b, 0.0)), p_value


__all__ = ["BoundaryLimit", "MBAMResult", "classify_limit", "mbam", "reduce_model"]
