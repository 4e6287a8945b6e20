"""ODE models, with bolus and infusion dosing from the design.

The default explicit solver (Tsit5) runs in fimkit's own loop (`_rk`), and so does the
Rosenbrock solvers for stiff systems (Rodas5P and Rodas4, `_rosenbrock`); the others run in diffrax.

Sensitivities come from forward-mode automatic differentiation through the solve
(`diffrax.ForwardMode`, or through fimkit's loops): the derivatives are exact for the numerical
solution, with no finite differences. With the explicit Tsit5 loop the state carries them itself
(`ODEModel._simulate_sensitivities`): the same numbers, one array instead of a primal and a batch
of tangents. Doses split the time axis into segments: each segment is one
solve, a bolus is a jump of the state between segments, and an infusion is a constant rate added to
the derivative on the segments it covers, so the solver never steps across a discontinuity.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._jax import stack_scalars
from ..design import Bolus, Group, Infusion
from ..errors import DesignError, ModelError, describe
from ._rk import tsit5_solve
from ._rosenbrock import rodas4_solve, rodas5p_solve
from .base import (
    STATUS_MAX_STEPS,
    STATUS_NONFINITE,
    STATUS_OK,
    STATUS_SOLVER_FAILED,
    AbstractModel,
    check_names,
)

# Solvers that run in diffrax, by name. diffrax (with equinox, lineax and optimistix) takes almost
# half a second to import, so it is imported only when one of these is used.
EXPLICIT_SOLVERS = ("tsit5", "dopri5", "dopri8")  # "tsit5" by name runs in `_rk` instead
IMPLICIT_SOLVERS = ("kvaerno3", "kvaerno5")


def diffrax_solver(name: str, root_finder: Any = None) -> Any:
    """A diffrax solver instance for one of the names above."""
    import diffrax

    cls = {
        "tsit5": diffrax.Tsit5,
        "dopri5": diffrax.Dopri5,
        "dopri8": diffrax.Dopri8,
        "kvaerno3": diffrax.Kvaerno3,
        "kvaerno5": diffrax.Kvaerno5,
    }[name]
    return cls() if root_finder is None else cls(root_finder=root_finder)


def _is_diffrax_solver(obj: Any) -> bool:
    import sys

    diffrax = sys.modules.get("diffrax")
    return diffrax is not None and isinstance(obj, diffrax.AbstractSolver)


# Solvers that run in fimkit's own integrator loops (same contract: `_rk.tsit5_solve`).
# "tsit5" by name runs here too; a diffrax solver instance always runs in diffrax.
OWN_LOOPS = {
    "tsit5": tsit5_solve,
    # Linearly implicit (Rosenbrock) methods for stiff systems; diffrax has no twin of these.
    "rodas5p": rodas5p_solve,
    "rodas4": rodas4_solve,
}


@dataclass(frozen=True)
class DoseSchedule:
    """The static structure of a group's doses (hashable: it keys compiled programs).

    `edges` are the segment start times (the first is the model's t0). `boluses[k]` lists the
    (state index, source) pairs applied at the start of segment k; `rates[k]` lists the
    (state index, source, duration) triples of infusions active during segment k, where duration is
    None for a rate and the infusion's duration when the source is its total amount. A source is
    ("value", i) for entry i of the dynamic dose-value vector, or ("param", name).
    """

    edges: tuple[float, ...]
    boluses: tuple[tuple[tuple[int, tuple], ...], ...]
    rates: tuple[tuple[tuple[int, tuple, float | None], ...], ...]


def build_schedule(model: ODEModel, group: Group, param_names: Sequence[str]):
    """The `DoseSchedule` and the vector of numeric dose values for one design group."""
    values: list[float] = []

    def source(v: float | str, what: str) -> tuple:
        if isinstance(v, str):
            if v not in param_names:
                raise DesignError(
                    f"The {what} {v!r} of a dose is not a parameter name; the parameters are "
                    f"{list(param_names)}."
                )
            return ("param", v)
        values.append(float(v))
        return ("value", len(values) - 1)

    def state_index(d: Bolus | Infusion) -> int:
        if d.state not in model.states:
            raise DesignError(
                f"A dose goes into state {d.state!r}, which does not exist; the states of the model "
                f"are {list(model.states)}. Got {d!r}."
            )
        return model.states.index(d.state)

    t0 = model.t0
    breaks: set[float] = set()
    for d in group.doses:
        start = d.time if isinstance(d, Bolus) else d.start
        if start < t0:
            raise DesignError(
                f"A dose starts at time {start!r}, before the model's initial time t0={t0!r}. Got {d!r}."
            )
        breaks.add(start)
        if isinstance(d, Infusion):
            breaks.add(d.end)
    edges = tuple([t0, *sorted(b for b in breaks if b > t0)])
    n_seg = len(edges)
    boluses: list[list] = [[] for _ in range(n_seg)]
    rates: list[list] = [[] for _ in range(n_seg)]
    for d in group.doses:
        i = state_index(d)
        if isinstance(d, Bolus):
            boluses[edges.index(max(d.time, t0))].append((i, source(d.amount, "amount")))
        else:
            if d.rate is not None:
                src, dur = source(d.rate, "rate"), None
            else:
                src, dur = source(d.amount, "amount"), d.duration
            for k in range(n_seg):
                if d.start <= edges[k] < d.end:
                    rates[k].append((i, src, dur))
    schedule = DoseSchedule(edges, tuple(tuple(b) for b in boluses), tuple(tuple(r) for r in rates))
    return schedule, np.asarray(values, dtype=np.float64)


def _vector(value: Any, n: int, what: str, owner: str):
    if isinstance(value, list | tuple):
        value = stack_scalars([jnp.asarray(v, dtype=jnp.float64) for v in value])
    y = jnp.asarray(value, dtype=jnp.float64)
    if y.size != n:
        raise ModelError(f"The '{what}' of {owner} must give {n} value(s). Got shape {y.shape}.")
    return y.reshape(n)


class ODEModel(AbstractModel):
    """A model defined by ordinary differential equations.

    **Arguments:**
    - `rhs`: ``rhs(t, y, p)`` returns dy/dt; `y` is the state vector in `states` order and `p` a dict
      of parameters keyed by name. Return an array or a list of expressions.
    - `y0`: the initial state: a list of numbers, or ``y0(p)`` when it depends on the parameters.
    - `observe`: ``observe(t, y, p)`` returns the outputs (a scalar for one output, else a sequence).
    - `params`, `states`, `outputs`: names.
    - `t0`: the initial time (default 0).
    - `solver`: ``"tsit5"`` (default; explicit, for non-stiff systems; fimkit's own integrator
      loop, see `fimkit.models._rk`), ``"dopri5"``, ``"dopri8"`` (diffrax),
      or for stiff systems: ``"rodas5p"`` or ``"rodas4"`` (Rosenbrock methods in fimkit's own
      loop, see `fimkit.models._rosenbrock`), or the implicit ``"kvaerno5"`` or ``"kvaerno3"``
      (diffrax). A diffrax solver instance is accepted too.
    - `rtol`, `atol`: tolerances of the adaptive step size control (defaults 1e-8, 1e-10).
    - `max_steps`: the most steps one solve may take (default 100 000); a solve that needs more
      is reported as a `SolverError`.
    - `name`: a label used in reports.
    """

    def __init__(
        self,
        rhs: Callable[[Any, Any, dict], Any],
        y0: Any,
        observe: Callable[[Any, Any, dict], Any],
        params: Sequence[str],
        states: Sequence[str],
        outputs: Sequence[str] = ("y",),
        *,
        t0: float = 0.0,
        solver: Any = "tsit5",
        rtol: float = 1e-8,
        atol: float = 1e-10,
        max_steps: int = 100_000,
        name: str | None = None,
    ):
        for arg, f in (("rhs", rhs), ("observe", observe)):
            if not callable(f):
                raise ModelError(
                    f"The '{arg}' argument of ODEModel must be callable. Got {describe(f)}."
                )
        self.rhs = rhs
        self.observe = observe
        self._params = check_names("params", params)
        self._states = check_names("states", states)
        self._outputs = check_names("outputs", outputs)
        if not self._states or not self._outputs:
            raise ModelError(
                f"ODEModel needs at least one state and one output. Got states={list(self._states)}, "
                f"outputs={list(self._outputs)}."
            )
        if callable(y0):
            self.y0 = y0
        else:
            try:
                y0_arr = np.asarray(y0, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError) as exc:
                raise ModelError(
                    f"The 'y0' argument of ODEModel must be a list of numbers or a function y0(p). "
                    f"Got {describe(y0)}."
                ) from exc
            if y0_arr.size != len(self._states) or not np.all(np.isfinite(y0_arr)):
                raise ModelError(
                    f"The 'y0' argument of ODEModel must hold {len(self._states)} finite values, one "
                    f"per state {list(self._states)}. Got {describe(y0)}."
                )
            self.y0 = y0_arr
        try:
            self.t0 = float(t0)
        except (TypeError, ValueError) as exc:
            raise ModelError(
                f"The 't0' argument of ODEModel must be a number. Got {describe(t0)}."
            ) from exc
        for arg, v in (("rtol", rtol), ("atol", atol)):
            if not isinstance(v, int | float) or not np.isfinite(v) or v <= 0:
                raise ModelError(
                    f"The '{arg}' argument of ODEModel must be a number > 0. Got {describe(v)}."
                )
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ModelError(
                f"The 'max_steps' argument of ODEModel must be an integer >= 1. Got {describe(max_steps)}."
            )
        self.rtol, self.atol, self.max_steps = float(rtol), float(atol), int(max_steps)
        self.solver_name, self.solver = self._make_solver(solver)
        # What the user asked for, to rebuild an equivalent model (e.g. a reduced one).
        self.solver_spec = self.solver_name if isinstance(solver, str) else self.solver
        # Tsit5 and the Rosenbrock methods by name run in fimkit's own integrators (`_rk`, `_rosenbrock`);
        # a diffrax instance runs in diffrax.
        self._own_loop = (
            OWN_LOOPS[self.solver_name]
            if isinstance(solver, str) and self.solver_name in OWN_LOOPS
            else None
        )
        self._name = name or getattr(rhs, "__name__", "ODEModel")
        self._freeze()

    def _make_solver(self, solver: Any) -> tuple[str, Any]:
        """(name, diffrax solver instance, or None for fimkit's own loops)."""
        if _is_diffrax_solver(solver):
            return type(solver).__name__, solver
        key = solver.lower() if isinstance(solver, str) else None
        if key in OWN_LOOPS:
            return key, None
        if key in EXPLICIT_SOLVERS:
            return key, diffrax_solver(key)
        if key in IMPLICIT_SOLVERS:
            import optimistix as optx

            # A chord method with tolerances tighter than the step control: the default root
            # finder takes several times more steps on mildly stiff signalling models.
            root = optx.Chord(rtol=self.rtol * 1e-2, atol=self.atol * 1e-2)
            return key, diffrax_solver(key, root)
        raise ModelError(
            "The 'solver' argument of ODEModel must be one of "
            f"{sorted(set(EXPLICIT_SOLVERS) | set(OWN_LOOPS)) + sorted(IMPLICIT_SOLVERS)} or a "
            f"diffrax solver. Got {describe(solver)}."
        )

    @property
    def params(self) -> tuple[str, ...]:
        return self._params

    @property
    def outputs(self) -> tuple[str, ...]:
        return self._outputs

    @property
    def states(self) -> tuple[str, ...]:
        return self._states

    @property
    def supports_doses(self) -> bool:
        return True

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return (
            f"ODEModel({self._name}, params={list(self._params)}, states={list(self._states)}, "
            f"outputs={list(self._outputs)}, solver={self.solver_name!r})"
        )

    def _solver_info(self) -> dict[str, Any]:
        return {
            "solver": self.solver_name,
            "rtol": self.rtol,
            "atol": self.atol,
            "max_steps": self.max_steps,
        }

    def _initial_state(self, p: dict):
        n = len(self._states)
        if callable(self.y0):
            return _vector(self.y0(p), n, "y0", f"ODEModel {self._name!r}")
        return jnp.asarray(self.y0)

    @property
    def _sensitivity_loop(self) -> bool:
        """Whether `_simulate_sensitivities` integrates the forward sensitivities itself (the
        explicit Tsit5 loop; other solvers are differentiated by the caller)."""
        return self._own_loop is tsit5_solve

    def _simulate(self, p: dict, times: Any, schedule: Any) -> tuple[Any, Any]:
        ys, _, status = self._solve(p, times, schedule, sensitivities=False)
        return ys, status

    def _simulate_sensitivities(self, p: dict, times: Any, schedule: Any):
        """Outputs, their derivatives with respect to the model's parameters (shape (n_times,
        n_outputs, n_params), in `params` order) and the status, from one solve of the state
        augmented with its forward sensitivities (explicit Tsit5 only: see `_sensitivity_loop`).

        The variational equations are integrated with the same Runge–Kutta steps as the state
        (step size control on the state alone), which is what forward-mode AD through the solve
        computes, but as one array: each operation of the loop acts on the state and all its
        sensitivities at once instead of on a primal and a batch of tangents.
        """
        return self._solve(p, times, schedule, sensitivities=True)

    def _solve(self, p: dict, times: Any, schedule: Any, *, sensitivities: bool):
        if schedule is None:
            schedule, dose_values = DoseSchedule((self.t0,), ((),), ((),)), jnp.zeros(0)
        else:
            schedule, dose_values = schedule
        n_states = len(self._states)
        owner = f"ODEModel {self._name!r}"
        names = self._params

        def params_of(vector):
            return {**p, **dict(zip(names, vector, strict=True))}

        def value(src, vector):
            if src[0] == "param":  # a model parameter, or another name of θ (a constant here)
                return vector[names.index(src[1])] if src[1] in names else p[src[1]]
            return dose_values[src[1]]

        # The parameters enter the solver loop as one vector, built once outside it: the barrier
        # keeps XLA from sinking the stacking of the scalars (and of their tangents) into the loop
        # body, where it was redone at every stage (on the kinase cascade a third of the solve).
        packed = jax.lax.optimization_barrier(jnp.asarray([p[n] for n in names], dtype=float))

        def inflow_of(k, vector):
            inflow = jnp.zeros(n_states)
            for i, src, duration in schedule.rates[k]:
                v = value(src, vector)
                inflow = inflow.at[i].add(v if duration is None else v / duration)
            return inflow

        def rhs(t, y, vector, k):
            return _vector(self.rhs(t, y, params_of(vector)), n_states, "rhs", owner) + inflow_of(
                k, vector
            )

        if sensitivities:
            if not self._sensitivity_loop:
                raise ValueError("sensitivities are integrated by the explicit Tsit5 loop only")
            basis = jnp.eye(len(names))

            def lift(g, y_aug, vector):
                """g(y, vector) and its derivatives along the rows of the sensitivities."""
                y, S = y_aug[0], y_aug[1:]
                tangent = jax.vmap(lambda s, e: jax.jvp(g, (y, vector), (s, e))[1])
                return jnp.concatenate([g(y, vector)[None], tangent(S, basis)])

            def field(t, y_aug, args):
                vector, k = args
                return lift(lambda y, v: rhs(t, y, v, k), y_aug, vector)

            def initial(vector):
                def y0_of(v):
                    return self._initial_state(params_of(v))

                return jnp.concatenate([y0_of(vector)[None], jax.jacfwd(y0_of)(vector).T])

            def bolus(y_aug, vector, i, src):
                return lift(lambda y, v: y.at[i].add(value(src, v)), y_aug, vector)

        else:

            def field(t, y, args):
                vector, k = args
                return rhs(t, y, vector, k)

            def initial(vector):
                return self._initial_state(params_of(vector))

            def bolus(y, vector, i, src):
                return y.at[i].add(value(src, vector))

        if self._own_loop is None:
            import diffrax

            controller = diffrax.PIDController(rtol=self.rtol, atol=self.atol)
        order = jnp.argsort(times)
        ts = times[order]
        edges = schedule.edges
        t_end = jnp.maximum(ts[-1], edges[-1])
        y = initial(packed)
        status = jnp.asarray(STATUS_OK)
        saved = []
        own = {"rtol": self.rtol, "atol": self.atol, "max_steps": self.max_steps}
        if sensitivities:
            own["primal"] = _first_row
        for k, start in enumerate(edges):
            stop = edges[k + 1] if k + 1 < len(edges) else t_end
            for i, src in schedule.boluses[k]:
                y = bolus(y, packed, i, src)
            # The segment index is static: each segment's field has its own infusion rates.
            seg_field = functools.partial(_segment_field, field, k)
            if self._own_loop is not None:
                ys, y, seg_status = self._own_loop(
                    seg_field, start, stop, y, jnp.clip(ts, start, stop), packed, **own
                )
                status = jnp.where(status == STATUS_OK, seg_status, status)
                saved.append(ys)
                continue
            sol = diffrax.diffeqsolve(
                diffrax.ODETerm(seg_field),
                self.solver,
                t0=start,
                t1=stop,
                dt0=None,
                y0=y,
                args=packed,
                saveat=diffrax.SaveAt(ts=jnp.clip(ts, start, stop), t1=True),
                stepsize_controller=controller,
                max_steps=self.max_steps,
                adjoint=diffrax.ForwardMode(),
                throw=False,
            )
            failed = jnp.where(
                sol.result == diffrax.RESULTS.max_steps_reached,
                STATUS_MAX_STEPS,
                STATUS_SOLVER_FAILED,
            )
            ok = sol.result == diffrax.RESULTS.successful
            status = jnp.where((status == STATUS_OK) & ~ok, failed, status)
            saved.append(sol.ys[:-1])
            y = sol.ys[-1]
        if len(edges) == 1:
            states = saved[0]
        else:
            segment = jnp.searchsorted(jnp.asarray(edges[1:]), ts, side="right")
            states = jnp.stack(saved)[segment, jnp.arange(ts.shape[0])]
        n_out = len(self._outputs)

        def obs(t, yt, vector):
            return _vector(self.observe(t, yt, params_of(vector)), n_out, "observe", owner)

        inverse = jnp.argsort(order)
        if sensitivities:
            # Rows: the outputs, then their derivatives along each parameter.
            rows = jax.vmap(lambda t, ya: lift(lambda y, v: obs(t, y, v), ya, packed))(ts, states)
            ys, dys = rows[:, 0][inverse], jnp.moveaxis(rows[:, 1:], 1, 2)[inverse]
        else:
            ys, dys = jax.vmap(lambda t, y: obs(t, y, packed))(ts, states)[inverse], None
        status = jnp.where(
            (status == STATUS_OK) & ~jnp.all(jnp.isfinite(ys)), STATUS_NONFINITE, status
        )
        return ys, dys, status


def _first_row(y):
    return y[0]


def _segment_field(field, k, t, y, args):
    return field(t, y, (args, k))


__all__ = ["DoseSchedule", "ODEModel", "build_schedule"]
