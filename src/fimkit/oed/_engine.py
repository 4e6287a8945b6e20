"""The compiled programs behind optimal design: the information as a function of the design.

The information of independent observations adds: F = F₀ + Σ_g n_g Σ_k M_g(t_gk, doses_g), with M the
information of the observations at one sampling time. Two kinds of programs compute it:

- **model programs** (`model_program`, cached on the model instance per design structure) run the
  model and its forward sensitivities. They return the information of one subject of each group and
  its derivatives with respect to every sampling time and numeric dose amount. They do not depend on
  the criterion, on which design variables are free, or on the group sizes: one compilation per
  structure serves every criterion and every design space over that structure;
- **criterion programs** (`criterion_program`, small, jitted per criterion) assemble F from those
  pieces and the group sizes, add the prior, apply the criterion and its gradient.

The derivatives with respect to the sampling times take one forward-mode JVP for all times at once:
the information at a sampling time depends on that time only, once the end of the ODE solve is held
fixed by an *anchor* time (the last base time of a group, at the end of the design space, with no
weight). Each dose amount takes one more tangent direction of the same (vmapped) JVP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._jax import jit
from ..design import Design
from ..errors import FimkitError, ParameterError, describe
from ..information.fim import FisherInformation, _check_scale, information_terms
from ..prediction import Setup
from .criteria import Context, as_criterion
from .robust import RobustCriterion

# -- model programs -----------------------------------------------------------------------------------


def _elements(setup: Setup):
    """(θ, times, dose values) → per group (n_times, P, P): the linear-scale information about all P
    parameters of the observations at each sampling time (summed over the outputs measured there),
    for one subject; and an ok flag (the solve succeeded, the noise model is not degenerate)."""
    sizes = [g.times.size for g in setup.groups]
    n_out = [len(ix) for ix in setup.output_index]

    def run(theta, times, dose_values):
        S, G, w_loc, w_disp, _, _, status = information_terms(setup, theta, times, dose_values)
        ok = (
            jnp.all(status == 0)
            & jnp.all(jnp.isfinite(w_loc))
            & jnp.all(jnp.isfinite(w_disp))
            & jnp.all(jnp.isfinite(S))
            & (G is None or jnp.all(jnp.isfinite(G)))
        )
        out, start = [], 0
        for k, m in zip(sizes, n_out, strict=True):
            rows = slice(start, start + k * m)
            s, wl = S[rows], w_loc[rows]
            e = wl[:, None, None] * (s[:, :, None] * s[:, None, :])
            if G is not None:
                g, wd = G[rows], w_disp[rows]
                e = e + wd[:, None, None] * (g[:, :, None] * g[:, None, :])
            out.append(e.reshape(k, m, *e.shape[1:]).sum(axis=1))
            start += k * m
        return tuple(out), ok

    return run


def transform(M, theta, ctx: Context):
    """Linear-scale information about all parameters → on ctx.scale, about ctx.names."""
    if ctx.scale == "log":
        M = M * jnp.outer(theta, theta)
    idx = jnp.asarray(ctx.index)
    return M[..., idx[:, None], idx[None, :]]


def _per_time_fn(setup: Setup, ctx: Context, anchor: bool):
    elements = _elements(setup)

    def per_time(theta, times, doses):
        E, ok = elements(theta, times, doses)
        if anchor:
            E = tuple(e[:-1] for e in E)
        return tuple(transform(e, theta, ctx) for e in E), ok

    return per_time


def _over_thetas(fn):
    """Map `fn(θ, ...)` over the rows of θs; a single row skips the batching transform of the solve."""

    def run(thetas, *args):
        if thetas.shape[0] == 1:
            return jax.tree.map(lambda a: a[None], fn(thetas[0], *args))
        return jax.vmap(lambda th: fn(th, *args))(thetas)

    return run


def _parts_fn(setup: Setup, ctx: Context, anchor: bool, with_grad: bool):
    """(θs (T, P), times, doses) → the pieces every criterion is computed from:

    - `Fg` (T, G, p, p): the information of one subject of each group, at each θ;
    - `ok` (T,);
    - with `with_grad`: `dT`, per group (T, n_times_g, p, p), the derivative of the information at
      each sampling time with respect to that time; `dD` (T, n_doses, G, p, p), the derivative of each
      group's information with respect to each numeric dose amount (over the groups, in order).
    """
    per_time = _per_time_fn(setup, ctx, anchor)
    n_values = [v.size for v in setup.dose_values]
    slots = [(g, vi) for g, n in enumerate(n_values) for vi in range(n)]

    def parts(theta, times, doses):
        if not with_grad:
            E, ok = per_time(theta, times, doses)
            return jnp.stack([e.sum(axis=0) for e in E]), ok
        # Tangent directions: 0 = every sampling time at once (not the anchor); 1 + j = dose j.
        n_dir = 1 + len(slots)
        t_tan = []
        for t in times:
            tan = jnp.zeros((n_dir, t.shape[0]))
            t_tan.append(tan.at[0, : t.shape[0] - 1].set(1.0) if anchor else tan.at[0].set(1.0))
        d_tan = [jnp.zeros((n_dir, d.shape[0])) for d in doses]
        for j, (g, vi) in enumerate(slots):
            d_tan[g] = d_tan[g].at[1 + j, vi].set(1.0)

        def jvp(tt, dd):
            return jax.jvp(
                lambda a, b: per_time(theta, a, b), (times, doses), (tt, dd), has_aux=True
            )

        E, dE, ok = jax.vmap(jvp, out_axes=(None, 0, None))(tuple(t_tan), tuple(d_tan))
        Fg = jnp.stack([e.sum(axis=0) for e in E])
        dT = tuple(d[0] for d in dE)
        dD = jnp.stack([d[1:].sum(axis=1) for d in dE], axis=1)  # (n_doses, G, p, p)
        return Fg, ok, dT, dD

    return _over_thetas(parts)


def model_program(setup: Setup, ctx: Context, what: str, anchor: bool = False):
    """A compiled model program for this design structure, cached on the model instance.

    - ``"parts"``: (θs, times, doses) → (Fg, ok, dT, dD), see `_parts_fn`;
    - ``"value"``: (θs, times, doses) → (Fg, ok);
    - ``"value-batch"``: the same vmapped over a batch of designs (times and doses with a leading axis);
    - ``"elements"``: (θs, times, doses) → per group (T, n_times, p, p), ok (T,).
    """
    kind = ("oed", what, anchor, ctx)

    def build(s: Setup):
        if what == "parts":
            return _parts_fn(s, ctx, anchor, with_grad=True)
        if what == "value":
            return _parts_fn(s, ctx, anchor, with_grad=False)
        if what == "value-batch":
            return jax.vmap(_parts_fn(s, ctx, anchor, with_grad=False), in_axes=(None, 0, 0))
        if what == "elements":
            return _over_thetas(_per_time_fn(s, ctx, anchor))
        raise ValueError(what)

    return setup.compiled(kind, build)


# -- the free design variables ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where the free design variables x go (static, hashable).

    x = [free times of group 0, group 1, …] + [free dose amounts] + [group shares, with a budget].
    The first `counts[g]` base times of group g are free; `dose_slots` lists the free doses as
    (group, index in the group's numeric dose values); `n_values` is the number of numeric dose
    values of each group. With a budget, n_g = budget · share_g / cost_g; else the base group sizes.
    """

    counts: tuple[int, ...]
    n_values: tuple[int, ...]
    dose_slots: tuple[tuple[int, int], ...] = ()
    costs: tuple[float, ...] | None = None
    budget: float = 0.0
    anchor: bool = False

    @property
    def n_groups(self) -> int:
        return len(self.counts)

    @property
    def size(self) -> int:
        return (
            sum(self.counts) + len(self.dose_slots) + (0 if self.costs is None else self.n_groups)
        )

    def slot_index(self, g: int, vi: int) -> int:
        return sum(self.n_values[:g]) + vi

    def unpack(self, x, times_base, dose_base):
        """Times and dose values (numpy, per group) of the design x."""
        x = np.asarray(x, dtype=np.float64)
        pos, times = 0, []
        for g, k in enumerate(self.counts):
            t = np.array(times_base[g], dtype=np.float64)
            t[:k] = x[pos : pos + k]
            pos += k
            times.append(t)
        doses = [np.array(d, dtype=np.float64) for d in dose_base]
        for g, vi in self.dose_slots:
            doses[g][vi] = x[pos]
            pos += 1
        return tuple(times), tuple(doses)

    def shares(self, x):
        """The group shares of the budget (the last n_groups entries of x)."""
        return np.asarray(x)[self.size - self.n_groups :]

    def group_sizes(self, x, n_base):
        """n of every group (JAX; traced in the criterion programs)."""
        if self.costs is None:
            return n_base
        return self.budget * x[self.size - self.n_groups :] / jnp.asarray(self.costs)


# -- criterion programs ------------------------------------------------------------------------------------


def criterion_fn(crit: Any, ctx: Context):
    """(F per θ (S, p, p), θs (S, P)) → (utility, value); S = 1 for a local criterion."""
    if isinstance(crit, RobustCriterion):

        def value(Fs, thetas):
            return crit.value_batch(Fs, thetas, ctx)

    else:

        def value(Fs, thetas):
            return crit.value(Fs[0], thetas[0], ctx)

    def utility(Fs, thetas):
        v = value(Fs, thetas)
        return crit.to_utility(v), v

    return utility


_CRITERION_PROGRAMS: dict = {}


def criterion_program(crit: Any, ctx: Context, layout: Layout, mode: str):
    """The criterion side, jitted and cached: F = Σ_g n_g Fg + prior, then the criterion.

    - ``"grad"``: (x, n_base, Fg, ok, dT, dD, prior, θs) → (utility, value, F at θ, ok, ∇_x utility);
    - ``"value"``: (x, n_base, Fg, ok, prior, θs) → (utility, value, F at θ, ok);

    `ok` says the model was solved at every θ; the utility is −inf where it was not or where the
    criterion is not finite (a singular information), and the gradient is then zero.
    - ``"batch"``: ``"value"`` vmapped over x, Fg and ok.

    Row 0 of θs is the nominal θ; a robust criterion averages over the other rows. The gradient needs
    G = ∂utility/∂F (reverse mode on the small matrix algebra only): ∂/∂t_gk = n_g⟨G, ∂M_gk/∂t_gk⟩,
    ∂/∂dose = Σ_g n_g⟨G, ∂F_g/∂dose⟩, and, F being linear in the group sizes,
    ∂/∂share_g = (budget/cost_g)⟨G, F_g⟩.
    """
    key = (crit.key, ctx, layout, mode)
    if key in _CRITERION_PROGRAMS:
        return _CRITERION_PROGRAMS[key]
    robust = isinstance(crit, RobustCriterion)
    utility = criterion_fn(crit, ctx)
    rows = slice(1, None) if robust else slice(0, 1)

    def assemble(x, n_base, Fg, prior):
        n = layout.group_sizes(x, n_base)
        return n, jnp.einsum("g,tgij->tij", n, Fg) + prior

    def value(x, n_base, Fg, ok, prior, thetas):
        _, F = assemble(x, n_base, Fg, prior)
        u, v = utility(F[rows], thetas[rows])
        good = jnp.all(ok) & jnp.isfinite(u)
        return jnp.where(good, u, -jnp.inf), v, F[0], jnp.all(ok)

    def grad(x, n_base, Fg, ok, dT, dD, prior, thetas):
        n, F = assemble(x, n_base, Fg, prior)
        (u, v), G = jax.value_and_grad(utility, has_aux=True)(F[rows], thetas[rows])
        good = jnp.all(ok) & jnp.isfinite(u)
        grads = [
            n[g] * jnp.einsum("sij,skij->k", G, dT[g][rows][:, :k])
            for g, k in enumerate(layout.counts)
        ]
        if layout.dose_slots:
            idx = jnp.asarray([layout.slot_index(g, vi) for g, vi in layout.dose_slots])
            grads.append(jnp.einsum("sij,sdhij,h->d", G, dD[rows][:, idx], n))
        if layout.costs is not None:
            scale = layout.budget / jnp.asarray(layout.costs)
            grads.append(scale * jnp.einsum("sij,sgij->g", G, Fg[rows]))
        g = jnp.concatenate(grads) if grads else jnp.zeros(0)
        return jnp.where(good, u, -jnp.inf), v, F[0], jnp.all(ok), jnp.where(good, g, 0.0)

    if mode == "grad":
        program = jit(grad)
    elif mode == "value":
        program = jit(value)
    elif mode == "batch":
        program = jit(jax.vmap(value, in_axes=(0, None, 0, 0, None, None)))
    else:
        raise ValueError(mode)
    _CRITERION_PROGRAMS[key] = program
    return program


_MATRIX_PROGRAMS: dict = {}


def matrix_program(crit: Any, ctx: Context, batched: bool = False):
    """The criterion of informations given per θ, jitted: (F (S, p, p), θs (S, P)) → (utility,
    value); `batched` maps over a leading axis of F (the exchange algorithm's candidate swaps)."""
    key = (crit.key, ctx, batched)
    if key not in _MATRIX_PROGRAMS:
        fn = criterion_fn(crit, ctx)
        _MATRIX_PROGRAMS[key] = jax.jit(jax.vmap(fn, in_axes=(0, None)) if batched else fn)
    return _MATRIX_PROGRAMS[key]


# -- the problem: model, θ, noise, scale, parameters, prior, criterion ----------------------------------


@dataclass(frozen=True, eq=False)
class Problem:
    """Everything about an optimal design problem but the design: validated once per call."""

    model: Any
    noise: Any
    theta: np.ndarray  # every parameter, linear scale
    ctx: Context
    crit: Any
    prior: np.ndarray  # on ctx.scale, about ctx.names
    prior_fim: FisherInformation | None
    samples: np.ndarray | None  # (S, P) for a robust criterion

    @property
    def robust(self) -> bool:
        return isinstance(self.crit, RobustCriterion)

    @property
    def thetas(self) -> np.ndarray:
        """Row 0 the nominal θ, then the samples of a robust criterion."""
        if self.samples is None:
            return self.theta[None, :]
        return np.concatenate([self.theta[None, :], self.samples])

    def fim(self, F: np.ndarray, provenance: Mapping[str, Any]) -> FisherInformation:
        return FisherInformation(
            F, self.ctx.names, self.theta[list(self.ctx.index)], self.ctx.scale, provenance
        )


def make_problem(
    model: Any,
    theta: Any,
    criterion: Any,
    noise: Any,
    scale: str,
    params: Any,
    prior: Any,
    template: Design,
) -> Problem:
    scale = _check_scale(scale)
    setup = Setup.build(model, template, noise)
    all_names = setup.names
    th = setup.theta(theta, positive=(scale == "log"))
    if params is None:
        names = all_names
    else:
        names = (params,) if isinstance(params, str) else tuple(params)
        unknown = [n for n in names if n not in all_names]
        if unknown or not names or len(set(names)) != len(names):
            raise ParameterError(
                f"The 'params' argument must list distinct parameters of the model and noise "
                f"{list(all_names)} (the ones to estimate; the others are known). "
                f"Got {describe(params)}."
            )
    ctx = Context(tuple(names), all_names, tuple(all_names.index(n) for n in names), scale)
    crit = as_criterion(criterion).bind(ctx)
    samples = None
    if isinstance(crit, RobustCriterion):
        samples = crit.sample_matrix(all_names, th, positive=(scale == "log"))
    P, prior_fim = prior_matrix(prior, ctx, th)
    return Problem(setup.model, setup.noise, th, ctx, crit, P, prior_fim, samples)


def prior_matrix(prior: Any, ctx: Context, theta: np.ndarray):
    """The prior information on ctx.scale, in ctx.names order (zeros without a prior)."""
    p = len(ctx.names)
    if prior is None:
        return np.zeros((p, p)), None
    if not isinstance(prior, FisherInformation):
        raise FimkitError(
            "The 'prior' argument must be a FisherInformation (from earlier experiments). "
            f"Got {describe(prior)}."
        )
    if sorted(prior.names) != sorted(ctx.names):
        raise ParameterError(
            f"The 'prior' information is about {list(prior.names)}, but the design's information "
            f"is about {list(ctx.names)}: they must name the same parameters. Use "
            "prior.select([...]) or prior.marginal([...]) to drop parameters, or params=[...] to "
            "choose the parameters to estimate."
        )
    P = prior.to_scale(ctx.scale)
    order = [P.names.index(n) for n in ctx.names]
    at = theta[list(ctx.index)]
    if not np.allclose(P.theta[order], at, rtol=1e-8, atol=0.0):
        raise ParameterError(
            "The 'prior' information was computed at other parameter values: "
            f"{dict(zip(ctx.names, P.theta[order].tolist(), strict=True))}, the design at "
            f"{dict(zip(ctx.names, at.tolist(), strict=True))}."
        )
    return np.asarray(P.matrix[np.ix_(order, order)]), P


# -- running one structure -----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Runner:
    """Evaluates the criterion (and its gradient) of the designs x of one structure."""

    problem: Problem
    setup: Setup
    layout: Layout
    times_base: tuple[np.ndarray, ...]
    dose_base: tuple[np.ndarray, ...]
    n_base: np.ndarray

    def _thetas(self):
        return jnp.asarray(self.problem.thetas)

    def _model_args(self, x):
        times, doses = self.layout.unpack(x, self.times_base, self.dose_base)
        return tuple(jnp.asarray(t) for t in times), tuple(jnp.asarray(d) for d in doses)

    def grad(self, x) -> tuple[float, float, np.ndarray, bool, np.ndarray]:
        """(utility, value, F at θ with the prior, ok, ∇utility)."""
        p = self.problem
        th = self._thetas()
        parts = model_program(self.setup, p.ctx, "parts", self.layout.anchor)(
            th, *self._model_args(x)
        )
        crit = criterion_program(p.crit, p.ctx, self.layout, "grad")
        u, v, F, ok, g = crit(
            jnp.asarray(x, dtype=jnp.float64),
            jnp.asarray(self.n_base),
            *parts,
            jnp.asarray(p.prior),
            th,
        )
        return float(u), float(v), np.asarray(F), bool(ok), np.asarray(g)

    def value(self, x) -> tuple[float, float, np.ndarray, bool]:
        p = self.problem
        th = self._thetas()
        Fg, ok = model_program(self.setup, p.ctx, "value", self.layout.anchor)(
            th, *self._model_args(x)
        )
        crit = criterion_program(p.crit, p.ctx, self.layout, "value")
        u, v, F, good = crit(
            jnp.asarray(x, dtype=jnp.float64),
            jnp.asarray(self.n_base),
            Fg,
            ok,
            jnp.asarray(p.prior),
            th,
        )
        return float(u), float(v), np.asarray(F), bool(good)

    def utilities(self, X) -> np.ndarray:
        """Utilities of a batch of designs (rows of X), in one vmapped call of each program."""
        p = self.problem
        th = self._thetas()
        designs = [self.layout.unpack(x, self.times_base, self.dose_base) for x in X]
        times = tuple(
            jnp.asarray(np.stack([d[0][g] for d in designs])) for g in range(len(self.times_base))
        )
        doses = tuple(
            jnp.asarray(np.stack([d[1][g] for d in designs])) for g in range(len(self.dose_base))
        )
        Fg, ok = model_program(self.setup, p.ctx, "value-batch", self.layout.anchor)(
            th, times, doses
        )
        crit = criterion_program(p.crit, p.ctx, self.layout, "batch")
        u = crit(
            jnp.asarray(X, dtype=jnp.float64),
            jnp.asarray(self.n_base),
            Fg,
            ok,
            jnp.asarray(p.prior),
            th,
        )[0]
        return np.asarray(u)


def fixed_runner(problem: Problem, design: Design) -> Runner:
    """A runner of a fixed design (no free variables, no anchor)."""
    setup = Setup.build(problem.model, design, problem.noise)
    if setup.names != problem.ctx.all_names:
        raise ParameterError(
            f"The design's parameters {list(setup.names)} differ from the problem's "
            f"{list(problem.ctx.all_names)}."
        )
    layout = Layout(tuple(0 for _ in setup.groups), tuple(v.size for v in setup.dose_values))
    return Runner(
        problem,
        setup,
        layout,
        tuple(np.asarray(g.times) for g in setup.groups),
        tuple(np.asarray(v) for v in setup.dose_values),
        np.asarray([g.n for g in setup.groups], dtype=float),
    )


# -- the verdict on a design -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    utility: float
    value: float
    F: np.ndarray
    ok: bool
    feasible: bool
    null: np.ndarray | None


def verdict(problem: Problem, crit: Any, u: float, v: float, F: np.ndarray, ok: bool) -> Evaluation:
    """Feasibility: the solve succeeded, the criterion is finite and, when the criterion needs it,
    the information (at the nominal θ) is not singular (rank with the default tolerance)."""
    null = None
    feasible = ok and bool(np.isfinite(u))
    if ok and np.all(np.isfinite(F)):
        fi = problem.fim(F, {})
        if fi.rank() < fi.size:
            null = fi.null_space()
            if crit.requires_full_rank:
                feasible = False
    return Evaluation(u, v if feasible else float("nan"), F, ok, feasible, null)


def evaluate(
    problem: Problem, design: Design, crits: Sequence[Any] | None = None
) -> list[Evaluation]:
    """The criteria (default: the problem's) of a fixed design, from one model-program call per set of
    θ samples."""
    runner = fixed_runner(problem, design)
    crits = [problem.crit] if crits is None else list(crits)
    th = problem.theta[None, :]
    args = runner._model_args(np.zeros(0))
    program = model_program(runner.setup, problem.ctx, "value")
    n = jnp.asarray(runner.n_base)

    def informations(thetas):
        Fg, ok = program(jnp.asarray(thetas), *args)
        F = np.asarray(jnp.einsum("g,tgij->tij", n, Fg)) + problem.prior
        return F, np.asarray(ok)

    F0, ok0 = informations(th)
    out = []
    for crit in crits:
        if isinstance(crit, RobustCriterion):
            samples = crit.sample_matrix(
                problem.ctx.all_names, problem.theta, positive=problem.ctx.scale == "log"
            )
            Fs, oks = informations(samples)
            u, v = matrix_program(crit, problem.ctx)(jnp.asarray(Fs), jnp.asarray(samples))
            ok = bool(ok0[0] and oks.all())
        else:
            u, v = matrix_program(crit, problem.ctx)(jnp.asarray(F0), jnp.asarray(th))
            ok = bool(ok0[0])
        out.append(verdict(problem, crit, float(u), float(v), F0[0], ok))
    return out


__all__: list[str] = []
