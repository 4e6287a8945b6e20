"""Design criteria: scalar summaries of a Fisher information F that a good design makes large or small.

Each criterion is a small frozen object with a `value(F)` (the quantity in the field's words, e.g.
log det F) and a direction (`maximize`). The optimisers work on a monotone transform of the value,
the *utility* (always maximised, on a log-like scale so that one tolerance suits every criterion),
and relative efficiencies come from the values by the formula each criterion states.

A prior information from earlier experiments is added to F before any criterion is applied
(``optimize_design(..., prior=F0)``): criteria always see the information after the experiment.

| name | object | value | sense |
|---|---|---|---|
| ``"D"`` | `DOptimal` | log det F | max |
| ``"A"`` | `AOptimal` | tr F⁻¹ | min |
| ``"trace"`` | `InformationTrace` | tr F ("pseudo-A"; *not* A-optimality) | max |
| ``"E"`` | `EOptimal` | λ_min(F) | max |
| ``"ME"`` | `ModifiedEOptimal` | cond F = λ_max / λ_min | min |
| | `DsOptimal(names)` | log det of the information about `names`, the rest nuisance | max |
| | `COptimal(g)` | Var g(θ̂) = ∇gᵀ F⁻¹ ∇g (delta method) | min |

Robust criteria over a prior distribution of θ (`Expected`, `ExpectedLogDet`, `ExpectedDet`) live in
`fimkit.oed.robust`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import FimkitError, ParameterError, describe


@dataclass(frozen=True)
class Context:
    """What a criterion needs to know about the information it is applied to (static, hashable).

    - `names`: the parameters of the information, in matrix order (the estimated ones).
    - `all_names`: every parameter of the model and noise, in the order of the θ vector.
    - `index`: the position of each of `names` in `all_names`.
    - `scale`: ``"lin"`` or ``"log"``: the information is about θ or log θ.
    """

    names: tuple[str, ...]
    all_names: tuple[str, ...]
    index: tuple[int, ...]
    scale: str

    @property
    def size(self) -> int:
        return len(self.names)


def _chol(M):
    return jnp.linalg.cholesky(0.5 * (M + M.T))


def _logdet(M):
    """log det of a positive definite matrix (NaN when it is not)."""
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(_chol(M))))


def _inverse(M):
    L = _chol(M)
    Linv = jax.scipy.linalg.solve_triangular(L, jnp.eye(M.shape[0], dtype=M.dtype), lower=True)
    return Linv.T @ Linv


class Criterion(abc.ABC):
    """A scalar function of the Fisher information that a design should maximise or minimise.

    Members provide `value` (a JAX function of the matrix), `maximize`, `to_utility` (a strictly
    increasing transform of the value when maximised, decreasing when minimised) and `efficiency`.
    """

    name: ClassVar[str]
    maximize: ClassVar[bool]
    # Every built-in criterion but the trace needs an invertible information; a singular one makes
    # the design infeasible (reported with the undetermined direction).
    requires_full_rank: ClassVar[bool] = True

    def bind(self, ctx: Context) -> Criterion:
        """Check the criterion against the parameters of the information; return it ready to use."""
        return self

    @abc.abstractmethod
    def value(self, M: Any, theta: Any, ctx: Context) -> Any:
        """The criterion of the information `M` (p × p, on `ctx.scale`) at the full θ vector."""

    @abc.abstractmethod
    def to_utility(self, v: Any) -> Any:
        """The quantity the optimisers maximise, a monotone transform of the value."""

    @abc.abstractmethod
    def efficiency(self, v1: float, v0: float, ctx: Context) -> float:
        """The efficiency of a design with value `v1` relative to one with value `v0` (> 1: better)."""

    def utility(self, M: Any, theta: Any, ctx: Context) -> Any:
        return self.to_utility(self.value(M, theta, ctx))

    @property
    def key(self) -> tuple:
        """A hashable description (compiled programs are cached on it)."""
        return (type(self).__name__,)

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True)
class DOptimal(Criterion):
    """D-optimality: maximise log det F.

    The volume of the confidence ellipsoid of θ̂ is ∝ det(F)^(-1/2). Invariant to a reparametrisation
    (the log scale only adds a constant). Efficiency of design 1 relative to design 0:
    (det F₁ / det F₀)^(1/p).
    """

    name: ClassVar[str] = "D"
    maximize: ClassVar[bool] = True

    def value(self, M, theta, ctx):
        return _logdet(M)

    def to_utility(self, v):
        return v

    def efficiency(self, v1, v0, ctx):
        return float(np.exp((v1 - v0) / ctx.size))


@dataclass(frozen=True)
class AOptimal(Criterion):
    """A-optimality: minimise tr F⁻¹, the sum of the Cramér–Rao variance bounds.

    Not invariant to the scale of the parameters (use ``scale="log"`` for a sum of squared relative
    errors). Efficiency of design 1 relative to design 0: tr F₀⁻¹ / tr F₁⁻¹.
    """

    name: ClassVar[str] = "A"
    maximize: ClassVar[bool] = False

    def value(self, M, theta, ctx):
        return jnp.trace(_inverse(M))

    def to_utility(self, v):
        return -jnp.log(v)

    def efficiency(self, v1, v0, ctx):
        return float(v0 / v1)


@dataclass(frozen=True)
class InformationTrace(Criterion):
    """The trace of the information, tr F ("pseudo-A" in Pyomo.DoE): maximise.

    This is **not** A-optimality (which minimises tr F⁻¹): the trace is dominated by the best
    informed parameter and is blind to a singular information, so a design can maximise it and
    still leave a parameter undetermined. Efficiency: tr F₁ / tr F₀.
    """

    name: ClassVar[str] = "trace"
    maximize: ClassVar[bool] = True
    requires_full_rank: ClassVar[bool] = False

    def value(self, M, theta, ctx):
        return jnp.trace(M)

    def to_utility(self, v):
        return jnp.log(v)

    def efficiency(self, v1, v0, ctx):
        return float(v1 / v0)


@dataclass(frozen=True)
class EOptimal(Criterion):
    """E-optimality: maximise the smallest eigenvalue λ_min(F).

    Bounds the worst-determined direction: the largest variance of any unit-norm combination
    aᵀθ̂ is 1/λ_min. Not differentiable where the smallest eigenvalue is repeated. Efficiency:
    λ_min(F₁) / λ_min(F₀).
    """

    name: ClassVar[str] = "E"
    maximize: ClassVar[bool] = True

    def value(self, M, theta, ctx):
        return jnp.linalg.eigvalsh(0.5 * (M + M.T))[0]

    def to_utility(self, v):
        return jnp.log(v)

    def efficiency(self, v1, v0, ctx):
        return float(v1 / v0)


@dataclass(frozen=True)
class ModifiedEOptimal(Criterion):
    """Modified E-optimality: minimise the condition number cond F = λ_max / λ_min.

    Asks for an information that is informative about every direction alike (a round confidence
    ellipsoid), whatever its size. Efficiency: cond F₀ / cond F₁.
    """

    name: ClassVar[str] = "ME"
    maximize: ClassVar[bool] = False

    def value(self, M, theta, ctx):
        w = jnp.linalg.eigvalsh(0.5 * (M + M.T))
        return w[-1] / w[0]

    def to_utility(self, v):
        return -jnp.log(v)

    def efficiency(self, v1, v0, ctx):
        return float(v0 / v1)


def _names_argument(names: Any, owner: str) -> tuple[str, ...]:
    if isinstance(names, str):
        names = (names,)
    try:
        names = tuple(names)
    except TypeError as exc:
        raise FimkitError(
            f"The 'names' argument of {owner} must be a list of parameter names. Got {describe(names)}."
        ) from exc
    if not names or not all(isinstance(n, str) for n in names):
        raise FimkitError(
            f"The 'names' argument of {owner} must be a non-empty list of parameter names. "
            f"Got {describe(names)}."
        )
    if len(set(names)) != len(names):
        raise FimkitError(f"The 'names' argument of {owner} has duplicates: {list(names)}.")
    return names


@dataclass(frozen=True)
class DsOptimal(Criterion):
    """Ds-optimality: maximise log det of the information about a subset `names` of interest,
    the other parameters being estimated too (nuisance parameters).

    With F partitioned into the interest block s and the nuisance block n, the information left for
    s is the Schur complement F_ss − F_sn F_nn⁻¹ F_ns, whose inverse is the s-block of F⁻¹; its
    log det is log det F − log det F_nn. Efficiency: (ratio of the determinants)^(1/s).
    """

    names: tuple[str, ...]
    name: ClassVar[str] = "Ds"
    maximize: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", _names_argument(self.names, "DsOptimal"))

    def bind(self, ctx):
        unknown = [n for n in self.names if n not in ctx.names]
        if unknown:
            raise ParameterError(
                f"The 'names' of DsOptimal must be parameters of the information {list(ctx.names)}. "
                f"Got {unknown}."
            )
        return self

    def value(self, M, theta, ctx):
        rest = [i for i, n in enumerate(ctx.names) if n not in self.names]
        if not rest:
            return _logdet(M)
        nuis = jnp.asarray(rest)
        return _logdet(M) - _logdet(M[jnp.ix_(nuis, nuis)])

    def to_utility(self, v):
        return v

    def efficiency(self, v1, v0, ctx):
        return float(np.exp((v1 - v0) / len(self.names)))

    @property
    def key(self):
        return (type(self).__name__, self.names)

    @property
    def label(self):
        return f"Ds({', '.join(self.names)})"


@dataclass(frozen=True)
class COptimal(Criterion):
    """c-optimality (prediction-oriented): minimise the variance of a derived quantity g(θ̂).

    By the delta method Var g(θ̂) ≈ ∇gᵀ F⁻¹ ∇g, with ∇g taken with respect to the parameters of the
    information (log θ on the log scale), the others held at θ. `g(p)` receives the parameters as a
    dict keyed by name, like the model functions, and is written with `jax.numpy`: an AUC (``D/CL``),
    a half-life (``log(2)·V/CL``), a prediction. A vector-valued g gives the sum of the variances
    (L-optimality). Efficiency: Var₀ / Var₁.

    **Arguments:**
    - `g`: the derived quantity, ``g(p) -> scalar or vector``.
    - `label`: a name for reports (default ``"c"``).
    """

    g: Callable[[dict], Any]
    label: str = "c"
    name: ClassVar[str] = "c"
    maximize: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not callable(self.g):
            raise FimkitError(
                f"The 'g' argument of COptimal must be callable, g(p) -> value. Got {describe(self.g)}."
            )

    def gradient(self, theta, ctx):
        """∇g with respect to the parameters of the information (log θ on the log scale)."""
        idx = jnp.asarray(ctx.index)

        def h(u):
            x = jnp.exp(u) if ctx.scale == "log" else u
            full = theta.at[idx].set(x)
            out = self.g(dict(zip(ctx.all_names, full, strict=True)))
            return jnp.atleast_1d(jnp.asarray(out, dtype=jnp.float64))

        sub = theta[idx]
        u0 = jnp.log(sub) if ctx.scale == "log" else sub
        return jax.jacfwd(h)(u0)

    def value(self, M, theta, ctx):
        G = self.gradient(theta, ctx)
        L = _chol(M)
        X = jax.scipy.linalg.solve_triangular(L, G.T, lower=True)
        return jnp.sum(X * X)

    def to_utility(self, v):
        return -jnp.log(v)

    def efficiency(self, v1, v0, ctx):
        return float(v0 / v1)

    @property
    def key(self):
        return (type(self).__name__, self.g)


CRITERIA: dict[str, type[Criterion]] = {
    "D": DOptimal,
    "A": AOptimal,
    "trace": InformationTrace,
    "E": EOptimal,
    "ME": ModifiedEOptimal,
}


def as_criterion(criterion: Any) -> Any:
    """A `Criterion` (or a robust one) from itself or from one of the names ``"D"``, ``"A"``,
    ``"trace"``, ``"E"``, ``"ME"``."""
    from .robust import RobustCriterion

    if isinstance(criterion, Criterion | RobustCriterion):
        return criterion
    if isinstance(criterion, str) and criterion in CRITERIA:
        return CRITERIA[criterion]()
    raise FimkitError(
        f"The 'criterion' argument must be one of {list(CRITERIA)} or a Criterion object "
        "(DsOptimal(names), COptimal(g), Expected(...), ...). "
        f"Got {describe(criterion)}."
    )


def criterion_value(
    criterion: Any, matrix: Any, names: Sequence[str], theta: Any = None, scale: str = "lin"
) -> float:
    """The value of `criterion` for a plain information matrix about `names`.

    A convenience for matrices computed elsewhere; `theta` (a dict or a vector in `names` order) is
    needed by c-optimality only. Returns NaN when the criterion needs an invertible matrix and the
    matrix is not positive definite.
    """
    from .robust import RobustCriterion

    crit = as_criterion(criterion)
    if isinstance(crit, RobustCriterion):
        raise FimkitError(
            f"criterion_value takes one information matrix; {crit.label} averages over θ samples. "
            "Use evaluate_design for robust criteria."
        )
    names = tuple(names)
    M = np.asarray(matrix, dtype=np.float64)
    if M.shape != (len(names), len(names)):
        raise FimkitError(
            f"The 'matrix' argument must be ({len(names)}, {len(names)}) for parameters "
            f"{list(names)}. Got shape {M.shape}."
        )
    if theta is None:
        th = np.ones(len(names))
    elif isinstance(theta, dict):
        th = np.array([float(theta[n]) for n in names])
    else:
        th = np.asarray(theta, dtype=np.float64)
    ctx = Context(names, names, tuple(range(len(names))), scale)
    crit = crit.bind(ctx)
    return float(crit.value(jnp.asarray(M), jnp.asarray(th), ctx))


__all__ = [
    "CRITERIA",
    "AOptimal",
    "COptimal",
    "Context",
    "Criterion",
    "DOptimal",
    "DsOptimal",
    "EOptimal",
    "InformationTrace",
    "ModifiedEOptimal",
    "as_criterion",
    "criterion_value",
]
