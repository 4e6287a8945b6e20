"""Structural (a priori) local identifiability of a `SymbolicModel`, by an exact method.

A parameter or unknown initial condition is *locally structurally identifiable* when noise-free
outputs, observed on any time interval, determine it up to finitely many values. For analytic models
the outputs are determined by their Taylor series at t0, so this is the rank question of Pohjanpalo
(1978) and Sedoglavic (2002): the Jacobian of the output Taylor coefficients y_j^(k)(t0), k ≤ K, with
respect to the unknowns. An unknown is identifiable exactly when it has no component along the null
space of that Jacobian.

How it is computed (exact, with a stated chance of error):

1. **Exact arithmetic.** The Taylor coefficients of the states and outputs are computed by power-series
   arithmetic (x_{k+1} = [f(x)]_k/(k+1)) together with their derivatives with respect to every
   unknown (dual numbers), in the integers modulo a random prime p in [2³¹, 2³²) at a random point.
   There is no rounding: the rank found is the rank of the exact Jacobian at that point, modulo p.
2. **How many derivatives.** A first pass treats every initial condition as unknown (and the time
   offset too, when an input depends on t), at a random point. There the ranks obey a proven stopping
   rule: once one more derivative order adds no rank, none ever will. That fixes the order K.
3. **The problem as posed.** A second pass evaluates the same coefficients at the actual known values
   (known initial conditions, t0, known parameters) and random unknowns. Known values can be special
   (a zero initial amount), so the rule of step 2 does not apply directly; instead the answer is
   *certified* when the Jacobian with respect to all initial conditions keeps, at the known values,
   the rank it has generically: the higher derivatives are then combinations of those up to K with
   coefficients that stay finite there, and order K suffices. Otherwise the result says so.
4. **The chance of a wrong answer.** A rank computed at a random point is never too high; it is too
   low only if the point is a root of a particular non-zero polynomial (a minor of the Jacobian).
   Its degree is bounded along the computation; by the Schwartz–Zippel lemma a point drawn uniformly
   modulo p is a root with probability at most degree/p. Each of `trials` independent points and
   primes must fail for the answer to be wrong, so the bound is Σ_events (degree/2³¹)^trials
   (`StructuralIdentifiability.error_bound`). The chance that a random 32-bit prime divides every
   coefficient of that polynomial is not included; it is far smaller for models of this size.

Exponentials, sines and cosines are exact too: the value of exp(g) at t0 is a transcendental function
of the unknowns, so it is drawn as an independent random number (its derivatives follow the chain rule),
which is valid when the exponents are linearly independent over the rationals modulo constants
(Ax 1971, the functional Lindemann–Weierstrass theorem); this is checked, and a model that violates
it is refused. A sine/cosine pair is drawn as a random rational point of the unit circle. Non-integer
powers, logarithms and other functions are refused with a clear error: never a silently wrong answer.

Identifiable combinations come from the null space: a Laurent polynomial in the unknowns whose
gradient is orthogonal to the null space at every point is identifiable. Its coefficients solve a
linear system assembled at many random points; small ones are recovered exactly by rational
reconstruction and each is verified at fresh points and primes. Together with the identifiable
unknowns they must reach the rank of the Jacobian (generate the field of identifiable functions up to
algebraic extension); `combinations_complete` says whether they do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import sympy
from sympy import ZZ
from sympy.polys.matrices import DomainMatrix

from ..errors import FimkitError, ModelError, describe
from ..models.symbolic import TIME, SymbolicModel, ic_name
from ..report.tables import Summary, Table
from .local import NOT_IDENTIFIABLE, integer_kernel

LOCALLY_IDENTIFIABLE = "locally identifiable"
STRUCTURAL_VERDICTS = (LOCALLY_IDENTIFIABLE, NOT_IDENTIFIABLE)

# Primes are drawn from [2^31, 2^32): products of two residues fit in uint64, and the
# Schwartz–Zippel bound uses the smallest possible prime, 2^31.
_P_LOW, _P_HIGH = 2**31, 2**32
_DEFAULT_TRIALS = 3
# Redraws allowed when a random point hits a zero denominator or a non-residue.
_MAX_REDRAWS = 8
# Combination search: Laurent monomials per linear system, points evaluated per batch.
_MAX_CANDIDATES = 400
_BATCH = 16


# ---------------------------------------------------------------------------------------------------
# Modular helpers
# ---------------------------------------------------------------------------------------------------
def _random_prime(rng: np.random.Generator) -> int:
    while True:
        n = int(rng.integers(_P_LOW, _P_HIGH)) | 1
        if sympy.isprime(n):
            return n


def _residue(q: Fraction, p: int) -> int:
    den = q.denominator % p
    if den == 0:
        raise _Unlucky("a denominator of a constant is divisible by the prime")
    return q.numerator % p * pow(den, -1, p) % p


def _rref(mat: np.ndarray, p: int) -> tuple[np.ndarray, list[int]]:
    """Reduced row-echelon form modulo p (uint64 entries < p) and the pivot columns."""
    a = np.array(mat, dtype=np.uint64) % np.uint64(p)
    rows, cols = a.shape
    pu = np.uint64(p)
    pivots: list[int] = []
    r = 0
    for c in range(cols):
        if r == rows:
            break
        nz = np.flatnonzero(a[r:, c])
        if nz.size == 0:
            continue
        i = r + int(nz[0])
        if i != r:
            a[[r, i]] = a[[i, r]]
        a[r] = a[r] * np.uint64(pow(int(a[r, c]), -1, p)) % pu
        f = a[:, c].copy()
        f[r] = 0
        a = (a + ((pu - f) % pu)[:, None] * a[r][None, :] % pu) % pu
        pivots.append(c)
        r += 1
    return a[:r], pivots


def _rank(mat: np.ndarray, p: int) -> int:
    if mat.size == 0:
        return 0
    return len(_rref(mat, p)[1])


def _null_space(mat: np.ndarray, p: int) -> np.ndarray:
    """A basis (columns) of {v : mat·v = 0} modulo p."""
    n = mat.shape[1]
    if mat.shape[0] == 0:
        return np.eye(n, dtype=np.uint64)
    r, piv = _rref(mat, p)
    free = [c for c in range(n) if c not in piv]
    out = np.zeros((n, len(free)), dtype=np.uint64)
    pu = np.uint64(p)
    for j, f in enumerate(free):
        out[f, j] = 1
        for i, c in enumerate(piv):
            out[c, j] = (pu - r[i, f]) % pu
    return out


def _matmul(a: np.ndarray, b: np.ndarray, p: int) -> np.ndarray:
    """a @ b modulo p for uint64 residues (each product reduced before summing)."""
    pu = np.uint64(p)
    out = np.zeros((a.shape[0], b.shape[1]), dtype=np.uint64)
    for j in range(a.shape[1]):
        out = (out + a[:, j : j + 1] * b[j : j + 1, :] % pu) % pu
    return out


def _rational_reconstruction(a: int, p: int) -> Fraction | None:
    """The fraction n/d with |n|, d ≤ √(p/2) congruent to a modulo p, or None (Wang's algorithm)."""
    bound = math.isqrt(p // 2)
    r0, r1, s0, s1 = p, a % p, 0, 1
    while r1 > bound:
        q = r0 // r1
        r0, r1 = r1, r0 - q * r1
        s0, s1 = s1, s0 - q * s1
    if s1 == 0 or abs(s1) > bound or math.gcd(r1, abs(s1)) != 1:
        return None
    return Fraction(r1, s1)


class _Unlucky(Exception):
    """The random point or prime hit a zero denominator or a non-residue: draw again."""

    def __init__(self, message: str, node: int | None = None):
        super().__init__(message)
        self.node = node


# ---------------------------------------------------------------------------------------------------
# Degree bounds. A quantity N / Π_j B_j^{e_j} (B_j the base denominators met so far) is bounded by
# (deg N, e); None stands for an exact zero. The bound only grows where the arithmetic can.
# ---------------------------------------------------------------------------------------------------
def _badd(x, y, delta):
    if x is None:
        return y
    if y is None:
        return x
    e = tuple(max(a, b) for a, b in zip(x[1], y[1], strict=True))
    nx = x[0] + sum((ei - xi) * d for ei, xi, d in zip(e, x[1], delta, strict=True))
    ny = y[0] + sum((ei - yi) * d for ei, yi, d in zip(e, y[1], delta, strict=True))
    return (max(nx, ny), e)


def _bmul(x, y):
    if x is None or y is None:
        return None
    return (x[0] + y[0], tuple(a + b for a, b in zip(x[1], y[1], strict=True)))


# ---------------------------------------------------------------------------------------------------
# The equations as a graph of power-series operations
# ---------------------------------------------------------------------------------------------------
@dataclass
class _Node:
    op: str
    args: tuple[int, ...] = ()
    data: Any = None
    expr: Any = None


def _unsupported(what: str, where: str, why: str) -> ModelError:
    return ModelError(
        f"structural_identifiability cannot treat {what} in {where} exactly: {why}. Rewrite the "
        "model without it (for example fix the exponent to an integer, or introduce a state for "
        "the term), or use the numeric identifiability of the Fisher information."
    )


class _Plan:
    """The model with its inputs substituted, as a DAG of series operations.

    Coordinates (the columns of the full Jacobian): every parameter, every state's initial value,
    and the time offset τ0 when the equations depend on time.
    """

    def __init__(self, model: SymbolicModel, input_functions: Mapping[str, Any]):
        self.model = model
        t = model.symbol(TIME)
        self.tau = sympy.Dummy("tau")
        shift = self.tau + sympy.Rational(repr(model.t0)) if model.t0 else self.tau
        self.generic_inputs = [u for u, e in input_functions.items() if e is None]
        sub = {
            model.symbol(u): e.xreplace({t: shift})
            for u, e in input_functions.items()
            if e is not None
        }
        self.floats: list[str] = []
        rhs = {s: self._prepare(e.xreplace(sub).xreplace({t: shift})) for s, e in model.rhs.items()}
        outs = {
            o: self._prepare(e.xreplace(sub).xreplace({t: shift}))
            for o, e in model.output_exprs.items()
        }
        self.uses_time = any(self.tau in e.free_symbols for e in (*rhs.values(), *outs.values()))
        self.params = list(model.params)
        self.states = list(model.states)
        self.coords = [("param", q) for q in self.params] + [("ic", s) for s in self.states]
        if self.uses_time:
            self.coords.append(("tau", None))
        self.M = len(self.coords)
        self.param_index = {q: i for i, q in enumerate(self.params)}
        self.state_index = {s: len(self.params) + i for i, s in enumerate(self.states)}
        self.tau_index = self.M - 1 if self.uses_time else None

        self.nodes: list[_Node] = []
        self._cache: dict[Any, int] = {}
        self._powers: dict[tuple[int, int], int] = {}
        self.exps: list[tuple[int, sympy.Expr]] = []  # (node, exponent)
        self.angles: list[tuple[int, int, sympy.Expr]] = []  # (sin node, cos node, argument)
        self.recips: list[int] = []
        self.state_nodes = [
            self._leaf("state", self.state_index[s], model.symbol(s)) for s in self.states
        ]
        for s, n in zip(self.states, self.state_nodes, strict=True):
            self._cache[model.symbol(s)] = n
        for q in self.params:
            self._cache[model.symbol(q)] = self._leaf("coord", self.param_index[q], model.symbol(q))
        if self.uses_time:
            self._cache[self.tau] = self._leaf("tau", self.tau_index, self.tau)
        for i, u in enumerate(self.generic_inputs):
            self._cache[model.symbol(u)] = self._leaf("input", i, model.symbol(u))
        self.rhs_nodes = [self._node(rhs[s], f"the right-hand side of {s!r}") for s in self.states]
        self.output_nodes = [self._node(outs[o], f"the output {o!r}") for o in model.outputs]
        self.n_bases = len(self.recips) + len(self.angles)
        self.base_of = {n: i for i, n in enumerate(self.recips)}
        for j, (s_node, _, _) in enumerate(self.angles):
            self.base_of[s_node] = len(self.recips) + j

    def _prepare(self, e: sympy.Expr) -> sympy.Expr:
        floats = e.atoms(sympy.Float)
        if floats:
            sub = {f: sympy.Rational(repr(float(f))) for f in floats}
            self.floats.extend(f"{float(f)!r} → {sub[f]}" for f in floats)
            e = e.xreplace(sub)
        e = e.replace(
            lambda x: isinstance(x, sympy.sinh | sympy.cosh | sympy.tanh),
            lambda x: x.rewrite(sympy.exp),
        )
        e = e.replace(
            lambda x: isinstance(x, sympy.tan),
            lambda x: sympy.sin(x.args[0]) / sympy.cos(x.args[0]),
        )
        return e

    def show(self, e: Any) -> str:
        """An expression as the user wrote it (the internal time offset τ shown as t − t0)."""
        t = self.model.symbol(TIME)
        shift = t - sympy.Rational(repr(self.model.t0)) if self.model.t0 else t
        return str(e.xreplace({self.tau: shift})) if isinstance(e, sympy.Basic) else str(e)

    def _leaf(self, op: str, data: Any, expr: Any) -> int:
        self.nodes.append(_Node(op, (), data, expr))
        return len(self.nodes) - 1

    def _add(self, op: str, args: tuple[int, ...], data: Any = None, expr: Any = None) -> int:
        self.nodes.append(_Node(op, args, data, expr))
        return len(self.nodes) - 1

    def _node(self, e: sympy.Expr, where: str) -> int:
        if e in self._cache:
            return self._cache[e]
        n = self._build(e, where)
        self._cache[e] = n
        return n

    def _power(self, base: int, n: int, expr: Any) -> int:
        if n == 1:
            return base
        key = (base, n)
        if key not in self._powers:
            half = self._power(base, n // 2, expr)
            sq = self._add("mul", (half, half), expr=expr)
            self._powers[key] = sq if n % 2 == 0 else self._add("mul", (sq, base), expr=expr)
        return self._powers[key]

    def _build(self, e: sympy.Expr, where: str) -> int:
        if e.is_Rational:
            return self._add("const", (), Fraction(int(e.p), int(e.q)), e)
        if e.is_number:
            raise _unsupported(
                f"the constant {self.show(e)}",
                where,
                "it is irrational, and exact arithmetic needs rational numbers",
            )
        if isinstance(e, sympy.Symbol):
            raise _unsupported(f"the symbol {e}", where, "it is not a state, parameter or input")
        if e.is_Add:
            return self._add("add", tuple(self._node(a, where) for a in e.args), expr=e)
        if e.is_Mul:
            coeff, rest = e.as_coeff_Mul()
            factors = sympy.Mul.make_args(rest)
            node = self._node(factors[0], where)
            for f in factors[1:]:
                node = self._add("mul", (node, self._node(f, where)), expr=e)
            if coeff != 1:
                node = self._add("scale", (node,), Fraction(int(coeff.p), int(coeff.q)), e)
            return node
        if e.is_Pow:
            base, n = e.args
            if n.is_Integer:
                k = int(n)
                if k > 0:
                    return self._power(self._node(base, where), k, e)
                pos = self._node(base**-k, where)
                node = self._add("recip", (pos,), expr=base**-k)
                self.recips.append(node)
                return node
            if n.is_Rational:
                raise _unsupported(
                    f"the non-integer power {self.show(e)}",
                    where,
                    "its value at t0 is an algebraic, not rational, function of the unknowns",
                )
            raise _unsupported(
                f"the power {self.show(e)} with a symbolic exponent",
                where,
                "it is exp(exponent·log(base)), and logarithms are not supported",
            )
        if isinstance(e, sympy.exp):
            arg = e.args[0]
            if arg.has(sympy.exp, sympy.sin, sympy.cos):
                raise _unsupported(
                    f"the nested function {self.show(e)}", where, "exponents must be rational"
                )
            node = self._add("exp", (self._node(arg, where),), expr=e)
            self.exps.append((node, arg))
            return node
        if isinstance(e, sympy.sin | sympy.cos):
            arg = e.args[0]
            if arg.has(sympy.exp, sympy.sin, sympy.cos):
                raise _unsupported(
                    f"the nested function {self.show(e)}", where, "arguments must be rational"
                )
            g = self._node(arg, where)
            s_node = self._add("sin", (g,), expr=sympy.sin(arg))
            c_node = self._add("cos", (g,), s_node, sympy.cos(arg))
            self.nodes[s_node].data = c_node
            self.angles.append((s_node, c_node, arg))
            self._cache[sympy.sin(arg)] = s_node
            self._cache[sympy.cos(arg)] = c_node
            return s_node if isinstance(e, sympy.sin) else c_node
        name = type(e).__name__
        if isinstance(e, sympy.Heaviside | sympy.Piecewise | sympy.DiracDelta):
            raise _unsupported(
                f"the piecewise function {self.show(e)}",
                where,
                "the outputs' Taylor series at t0 only sees the first piece of a switched input; "
                "analyse each piece as its own input (inputs={name: expression on that piece})",
            )
        raise _unsupported(
            f"the function {name} ({self.show(e)})",
            where,
            "only +, ·, integer powers, exp, sin and cos are evaluated exactly",
        )


# ---------------------------------------------------------------------------------------------------
# One evaluation: a batch of points (each with its own prime), Taylor coefficients order by order
# ---------------------------------------------------------------------------------------------------
@dataclass
class _Spec:
    """Where to evaluate: per batch element a prime and the coordinates' values, the random values
    of exponentials (w), circle points (S, C) and generic input coefficients."""

    primes: list[int]
    values: np.ndarray  # (B, M) residues
    value_bounds: list  # per coordinate: degree bound of its value
    exp_modes: list[str]  # "random" or "one"
    exp_w: np.ndarray  # (B, n_exp)
    angle_modes: list[str]  # "random" or "zero"
    angle_sc: np.ndarray  # (B, n_angle, 2): sin, cos
    inputs: np.ndarray  # (B, n_generic_inputs, K + 1)
    delta: list[int]  # degrees of the base denominators (filled during evaluation)
    n_extra_bases: int = 0


class _Taylor:
    """Taylor coefficients of every node with their derivatives along every coordinate (dual numbers),
    modulo each batch element's prime; optionally with degree bounds."""

    def __init__(self, plan: _Plan, spec: _Spec, K: int, track: bool):
        self.plan, self.spec, self.K, self.track = plan, spec, K, track
        B, M = spec.values.shape
        self.B, self.M = B, M
        self.P = np.array(spec.primes, dtype=np.uint64)
        self.P1 = self.P[:, None]
        self.P2 = self.P[:, None, None]
        self.X = [np.zeros((B, K + 1, M + 1), dtype=np.uint64) for _ in plan.nodes]
        self.k = 0
        self.exp_slot = {n: i for i, (n, _) in enumerate(plan.exps)}
        self.angle_slot = {s: i for i, (s, _, _) in enumerate(plan.angles)}
        self.consts = {}
        for i, node in enumerate(plan.nodes):
            if node.op in ("const", "scale"):
                self.consts[i] = np.array([_residue(node.data, p) for p in spec.primes], np.uint64)
        nb = plan.n_bases + spec.n_extra_bases
        self.zero = (0, (0,) * nb)
        self.delta = list(spec.delta)
        if track:
            self.vb = [[None] * (K + 1) for _ in plan.nodes]
            self.db = [[None] * (K + 1) for _ in plan.nodes]

    # dual-number arithmetic on rows of shape (B, M + 1)
    def _dmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.empty_like(a)
        out[:, 0] = a[:, 0] * b[:, 0] % self.P
        out[:, 1:] = (a[:, :1] * b[:, 1:] % self.P1 + b[:, :1] * a[:, 1:] % self.P1) % self.P1
        return out

    def _dinv(self, a: np.ndarray, node: int) -> np.ndarray:
        iv = []
        for v, p in zip(a[:, 0].tolist(), self.spec.primes, strict=True):
            if v == 0:
                raise _Unlucky("a denominator vanishes at the point", node)
            iv.append(pow(int(v), -1, p))
        ivs = np.array(iv, dtype=np.uint64)
        out = np.empty_like(a)
        out[:, 0] = ivs
        c = ivs * ivs % self.P
        out[:, 1:] = (self.P1 - a[:, 1:]) % self.P1 * c[:, None] % self.P1
        return out

    def _scale(self, a: np.ndarray, c: np.ndarray) -> np.ndarray:
        return a * c[:, None] % self.P1

    def _conv(self, A: np.ndarray, Bn: np.ndarray, lo: int, k: int, weighted: bool = False):
        """Σ_{i=lo}^{k} (i·)A_i ⊗ B_{k−i} for coefficient arrays of shape (B, K + 1, M + 1)."""
        if lo > k:
            return np.zeros((self.B, self.M + 1), dtype=np.uint64)
        a = A[:, lo : k + 1]
        if weighted:
            w = np.arange(lo, k + 1, dtype=np.uint64)
            a = a * w[None, :, None] % self.P2
        b = Bn[:, k - lo :: -1]
        out = np.empty((self.B, self.M + 1), dtype=np.uint64)
        out[:, 0] = (a[:, :, 0] * b[:, :, 0] % self.P1).sum(1) % self.P
        out[:, 1:] = (
            (a[:, :, :1] * b[:, :, 1:] % self.P2).sum(1)
            + (a[:, :, 1:] * b[:, :, :1] % self.P2).sum(1)
        ) % self.P1
        return out

    def _inv_k(self, k: int) -> np.ndarray:
        return np.array([pow(k, -1, p) for p in self.spec.primes], dtype=np.uint64)

    # degree bounds
    def _bconv(self, a: int, b: int, lo: int, k: int):
        v = d = None
        vb, db, delta = self.vb, self.db, self.delta
        for i in range(lo, k + 1):
            va, da, vv, dd = vb[a][i], db[a][i], vb[b][k - i], db[b][k - i]
            v = _badd(v, _bmul(va, vv), delta)
            d = _badd(d, _badd(_bmul(va, dd), _bmul(da, vv), delta), delta)
        return v, d

    def advance(self) -> tuple[np.ndarray, list]:
        """Compute order k of every node; return the outputs' rows (B, n_out, M) and row bounds."""
        k = self.k
        plan, spec, X = self.plan, self.spec, self.X
        track = self.track
        for i, node in enumerate(plan.nodes):
            op, x = node.op, X[i]
            vbd = None
            if op == "const":
                if k == 0:
                    x[:, 0, 0] = self.consts[i]
                    vbd = (self.zero if node.data != 0 else None, None)
                else:
                    vbd = (None, None)
            elif op in ("coord", "state", "tau"):
                if k == 0:
                    x[:, 0, 0] = spec.values[:, node.data]
                    x[:, 0, 1 + node.data] = 1
                    vbd = (spec.value_bounds[node.data], self.zero)
                elif op == "tau" and k == 1:
                    x[:, 1, 0] = 1
                    vbd = (self.zero, None)
                elif op == "state":
                    vbd = None  # written by the previous order
                else:
                    vbd = (None, None)
            elif op == "input":
                x[:, k, 0] = spec.inputs[:, node.data, k]
                vbd = ((1, self.zero[1]), None)
            elif op == "add":
                acc = X[node.args[0]][:, k].copy()
                for c in node.args[1:]:
                    acc += X[c][:, k]
                x[:, k] = acc % self.P1
                if track:
                    v = d = None
                    for c in node.args:
                        v = _badd(v, self.vb[c][k], self.delta)
                        d = _badd(d, self.db[c][k], self.delta)
                    vbd = (v, d)
            elif op == "scale":
                x[:, k] = self._scale(X[node.args[0]][:, k], self.consts[i])
                if track:
                    vbd = (self.vb[node.args[0]][k], self.db[node.args[0]][k])
            elif op == "mul":
                a, b = node.args
                x[:, k] = self._conv(X[a], X[b], 0, k)
                if track:
                    vbd = self._bconv(a, b, 0, k)
            elif op == "recip":
                (b,) = node.args
                if k == 0:
                    x[:, 0] = self._dinv(X[b][:, 0], i)
                    if track:
                        base = plan.base_of[i]
                        v0 = self.vb[b][0]
                        if v0 is None:
                            raise _Unlucky("a denominator is identically zero", i)
                        self.delta[base] = v0[0]
                        num = sum(e * d for e, d in zip(v0[1], self.delta, strict=True))
                        e = [0] * len(self.delta)
                        e[base] = 1
                        vr = (num, tuple(e))
                        vbd = (vr, _bmul(self.db[b][0], _bmul(vr, vr)))
                else:
                    s = self._conv(X[b], x, 1, k)
                    x[:, k] = self._dmul((self.P1 - s) % self.P1, x[:, 0])
                    if track:
                        vs, ds = self._bconv(b, i, 1, k)
                        v0, d0 = self.vb[i][0], self.db[i][0]
                        vbd = (_bmul(vs, v0), _badd(_bmul(vs, d0), _bmul(ds, v0), self.delta))
            elif op == "exp":
                (g,) = node.args
                slot = self.exp_slot[i]
                if k == 0:
                    if spec.exp_modes[slot] == "one":
                        w = np.ones(self.B, dtype=np.uint64)
                        vw = self.zero
                    else:
                        w = spec.exp_w[:, slot]
                        vw = (1, self.zero[1])
                    x[:, 0, 0] = w
                    x[:, 0, 1:] = self._scale(X[g][:, 0, 1:], w)
                    if track:
                        vbd = (vw, _bmul(vw, self.db[g][0]))
                else:
                    x[:, k] = self._scale(self._conv(X[g], x, 1, k, weighted=True), self._inv_k(k))
                    if track:
                        vbd = self._bconv(g, i, 1, k)
            elif op == "sin":
                (g,) = node.args
                c_node = node.data
                y = X[c_node]
                slot = self.angle_slot[i]
                if k == 0:
                    sc = spec.angle_sc[:, slot]
                    x[:, 0, 0], y[:, 0, 0] = sc[:, 0], sc[:, 1]
                    x[:, 0, 1:] = self._scale(X[g][:, 0, 1:], sc[:, 1])
                    y[:, 0, 1:] = self._scale((self.P1 - X[g][:, 0, 1:]) % self.P1, sc[:, 0])
                    if track:
                        if spec.angle_modes[slot] == "zero":
                            vs, vc = None, self.zero
                        else:
                            e = [0] * len(self.delta)
                            e[plan.base_of[i]] = 1
                            self.delta[plan.base_of[i]] = 2
                            vs, vc = (1, tuple(e)), (2, tuple(e))
                        self.vb[c_node][0] = vc
                        self.db[c_node][0] = _bmul(vs, self.db[g][0])
                        vbd = (vs, _bmul(vc, self.db[g][0]))
                else:
                    inv = self._inv_k(k)
                    x[:, k] = self._scale(self._conv(X[g], y, 1, k, weighted=True), inv)
                    yk = self._scale(self._conv(X[g], x, 1, k, weighted=True), inv)
                    y[:, k] = (self.P1 - yk) % self.P1
                    if track:
                        vbd = self._bconv(g, c_node, 1, k)
                        self.vb[c_node][k], self.db[c_node][k] = self._bconv(g, i, 1, k)
            elif op == "cos":
                vbd = None  # computed with its sine
            else:  # pragma: no cover - the plan only builds the ops above
                raise AssertionError(op)
            if track and vbd is not None:
                self.vb[i][k], self.db[i][k] = vbd
        # the states' next coefficients: x_{k+1} = f_k / (k + 1)
        if k < self.K:
            inv = self._inv_k(k + 1)
            for s_node, f_node in zip(plan.state_nodes, plan.rhs_nodes, strict=True):
                X[s_node][:, k + 1] = self._scale(X[f_node][:, k], inv)
                if track:
                    self.vb[s_node][k + 1] = self.vb[f_node][k]
                    self.db[s_node][k + 1] = self.db[f_node][k]
        rows = np.stack([X[o][:, k, 1:] for o in plan.output_nodes], axis=1)
        bounds = [self.db[o][k] for o in plan.output_nodes] if track else []
        self.k += 1
        return rows, bounds


# ---------------------------------------------------------------------------------------------------
# The two passes
# ---------------------------------------------------------------------------------------------------
@dataclass
class _Problem:
    """The problem as posed: which coordinates are unknown (z), the known values, the map z → s."""

    plan: _Plan
    z_names: list[str]
    z_kinds: list[str]
    z_symbols: list[sympy.Symbol]
    # per coordinate: ("z", j) | ("value", Fraction) | ("generic", None) | ("expr", sympy expr)
    coord_map: list[tuple[str, Any]]
    pass_b_exp_modes: list[str]
    pass_b_angle_modes: list[str]
    generic_known: list[str]
    ic_bases: list[tuple[int, int]] = field(default_factory=list)  # (coordinate, base degree)


def _classify_args(
    args: list[sympy.Expr], sub: Mapping, what: str, kind: str, show=str
) -> list[str]:
    """Exponential or trigonometric arguments at t0: "one"/"zero" when identically 0 there, else
    "random", after checking the random ones are linearly independent modulo constants."""
    modes, values = [], []
    for a in args:
        g0 = sympy.cancel(a.xreplace(sub))
        if g0 == 0:
            modes.append("one" if kind == "exp" else "zero")
            continue
        if not g0.free_symbols:
            raise ModelError(
                f"structural_identifiability cannot treat {what}({show(a)}) exactly: at t0 its argument "
                f"is the constant {g0}, and {what}({g0}) is irrational. Write the constant as a "
                "number, or shift the time origin."
            )
        modes.append("random")
        values.append(g0)
    if len(values) > 1:
        # Ax (1971): exp(g_1), ..., exp(g_n) are algebraically independent over the rational
        # functions when no rational combination of the g_i is constant. Test that at random points.
        syms = sorted(set().union(*(v.free_symbols for v in values)), key=str)
        rng = np.random.default_rng(12345)
        p = _random_prime(rng)
        n = len(values)
        rows = []
        for _ in range(n + 2):
            point = {s: int(rng.integers(1, p)) for s in syms}
            try:
                rows.append([_eval_mod(v, point, p) for v in values])
            except ZeroDivisionError:
                continue
        diffs = np.array(
            [[(r - r0) % p for r, r0 in zip(row, rows[0], strict=True)] for row in rows[1:]]
        )
        if diffs.size == 0 or _rank(diffs.astype(np.uint64), p) < n:
            raise ModelError(
                f"structural_identifiability cannot treat the {what} terms with arguments "
                f"{[show(a) for a in args]} exactly: their arguments at t0 are linearly dependent "
                f"modulo constants (as in {what}(a) and {what}(2·a)), so their values are not "
                "independent. Rewrite the model with one term per independent argument."
            )
    return modes


def _eval_mod(e: sympy.Expr, env: Mapping, p: int) -> int:
    """A rational expression evaluated modulo p (ZeroDivisionError at a pole)."""
    if e.is_Rational:
        den = int(e.q) % p
        if den == 0:
            raise ZeroDivisionError
        return int(e.p) % p * pow(den, -1, p) % p
    if isinstance(e, sympy.Symbol):
        return env[e] % p
    if e.is_Add:
        return sum(_eval_mod(a, env, p) for a in e.args) % p
    if e.is_Mul:
        out = 1
        for a in e.args:
            out = out * _eval_mod(a, env, p) % p
        return out
    if e.is_Pow and e.args[1].is_Integer:
        b = _eval_mod(e.args[0], env, p)
        n = int(e.args[1])
        if n < 0:
            if b == 0:
                raise ZeroDivisionError
            return pow(pow(b, -1, p), -n, p)
        return pow(b, n, p)
    raise ModelError(
        f"structural_identifiability needs rational expressions here; got {e} (type "
        f"{type(e).__name__})."
    )


def _is_rational_function(e: sympy.Expr) -> bool:
    if e.is_Rational or isinstance(e, sympy.Symbol):
        return True
    if e.is_Add or e.is_Mul:
        return all(_is_rational_function(a) for a in e.args)
    if e.is_Pow:
        return bool(e.args[1].is_Integer) and _is_rational_function(e.args[0])
    return False


def _poly_degrees(e: sympy.Expr) -> tuple[int, int]:
    """Total degrees of the numerator and denominator of a rational expression."""
    num, den = sympy.fraction(sympy.cancel(sympy.together(e)))
    syms = sorted(e.free_symbols, key=str)
    if not syms:
        return 0, 0
    return (
        sympy.Poly(num, *syms).total_degree() if num != 0 else 0,
        sympy.Poly(den, *syms).total_degree(),
    )


def _draw(rng: np.random.Generator, p: int) -> int:
    return int(rng.integers(1, p))


def _angle_point(rng: np.random.Generator, p: int) -> tuple[int, int]:
    """A random rational point (sin, cos) of the unit circle, by the half-angle substitution."""
    while True:
        v = _draw(rng, p)
        d = (1 + v * v) % p
        if d:
            inv = pow(d, -1, p)
            return 2 * v * inv % p, (1 - v * v) * inv % p


def _spec_a(plan: _Plan, primes: list[int], rng: np.random.Generator, K: int, modes) -> _Spec:
    """Pass A: every coordinate random (all initial conditions and the time offset unknown)."""
    B, M = len(primes), plan.M
    values = np.array([[_draw(rng, p) for _ in range(M)] for p in primes], dtype=np.uint64)
    exp_modes, angle_modes = modes
    return _Spec(
        primes=primes,
        values=values,
        value_bounds=[(1, (0,) * plan.n_bases)] * M,
        exp_modes=exp_modes,
        exp_w=np.array([[_draw(rng, p) for _ in plan.exps] for p in primes], np.uint64).reshape(
            B, len(plan.exps)
        ),
        angle_modes=angle_modes,
        angle_sc=np.array(
            [[_angle_point(rng, p) for _ in plan.angles] for p in primes], np.uint64
        ).reshape(B, len(plan.angles), 2),
        inputs=np.array(
            [[[_draw(rng, p) for _ in range(K + 1)] for _ in plan.generic_inputs] for p in primes],
            np.uint64,
        ).reshape(B, len(plan.generic_inputs), K + 1),
        delta=[0] * plan.n_bases,
    )


def _spec_b(
    prob: _Problem, primes: list[int], rng: np.random.Generator, K: int
) -> tuple[_Spec, np.ndarray, np.ndarray, Any]:
    """Pass B: the unknowns z random, known values as given; returns the spec, z values (B, m) and
    dι/dz (B, M, m), and the degree bound of the entries of dι/dz."""
    plan = prob.plan
    B, M, m = len(primes), plan.M, len(prob.z_names)
    n_b = plan.n_bases + len(prob.ic_bases)
    zero = (0,) * n_b
    values = np.zeros((B, M), dtype=np.uint64)
    dio = np.zeros((B, M, m), dtype=np.uint64)
    zvals = np.zeros((B, m), dtype=np.uint64)
    value_bounds: list[Any] = [None] * M
    delta = [0] * plan.n_bases + [d for _, d in prob.ic_bases]
    dio_bound: Any = None
    base_index = {c: plan.n_bases + i for i, (c, _) in enumerate(prob.ic_bases)}
    for b, p in enumerate(primes):
        z = [_draw(rng, p) for _ in range(m)]
        zvals[b] = z
        env = dict(zip(prob.z_symbols, z, strict=True))
        generic = {sympy.Symbol(g): _draw(rng, p) for g in prob.generic_known}
        env.update(generic)
        for c, (kind, data) in enumerate(prob.coord_map):
            if kind == "z":
                values[b, c] = z[data]
                dio[b, c, data] = 1
            elif kind == "value":
                values[b, c] = _residue(data, p)
            elif kind == "generic":
                values[b, c] = generic[sympy.Symbol(data)]
            else:  # a rational expression in the unknowns (an initial condition given by parameters)
                try:
                    values[b, c] = _eval_mod(data, env, p)
                    for j, s in enumerate(prob.z_symbols):
                        d = sympy.diff(data, s)
                        if d != 0:
                            dio[b, c, j] = _eval_mod(d, env, p)
                except ZeroDivisionError as exc:
                    raise _Unlucky("an initial condition's denominator vanishes") from exc
    e_unit = {}
    for c, (kind, data) in enumerate(prob.coord_map):
        if kind == "z":
            value_bounds[c] = (1, zero)
            dio_bound = _badd(dio_bound, (0, zero), delta)
        elif kind == "value":
            value_bounds[c] = (0, zero) if data != 0 else None
        elif kind == "generic":
            value_bounds[c] = (1, zero)
        else:
            dn, dd = _poly_degrees(data)
            if dd == 0:
                value_bounds[c] = (dn, zero)
                dio_bound = _badd(dio_bound, (max(dn - 1, 0), zero), delta)
            else:
                e = list(zero)
                e[base_index[c]] = 1
                e_unit[c] = tuple(e)
                value_bounds[c] = (dn, tuple(e))
                e2 = list(zero)
                e2[base_index[c]] = 2
                dio_bound = _badd(dio_bound, (dn + dd - 1, tuple(e2)), delta)
    spec = _Spec(
        primes=primes,
        values=values,
        value_bounds=value_bounds,
        exp_modes=prob.pass_b_exp_modes,
        exp_w=np.array([[_draw(rng, p) for _ in plan.exps] for p in primes], np.uint64).reshape(
            B, len(plan.exps)
        ),
        angle_modes=prob.pass_b_angle_modes,
        angle_sc=np.array(
            [
                [
                    (0, 1) if mode == "zero" else _angle_point(rng, p)
                    for mode in prob.pass_b_angle_modes
                ]
                for p in primes
            ],
            np.uint64,
        ).reshape(B, len(plan.angles), 2),
        inputs=np.array(
            [[[_draw(rng, p) for _ in range(K + 1)] for _ in plan.generic_inputs] for p in primes],
            np.uint64,
        ).reshape(B, len(plan.generic_inputs), K + 1),
        delta=delta,
        n_extra_bases=len(prob.ic_bases),
    )
    return spec, zvals, dio, dio_bound


def _with_redraws(fn, rng, plan: _Plan, what: str):
    """Run `fn()`; draw again when the point is unlucky; a denominator that vanishes at
    every draw is structural and reported."""
    hits: list[int | None] = []
    for _ in range(_MAX_REDRAWS):
        try:
            return fn()
        except _Unlucky as exc:
            hits.append(exc.node)
            if len(hits) >= 3 and len(set(hits[-3:])) == 1 and hits[-1] is not None:
                expr = plan.nodes[hits[-1]].expr
                raise ModelError(
                    f"structural_identifiability ({what}): the denominator {plan.show(expr)} is "
                    "zero at t0 for "
                    "every value of the unknowns (a known initial value or input makes the "
                    "equations singular at t0). Change the known values, or the model."
                ) from exc
    raise FimkitError(
        f"structural_identifiability: {what}: {_MAX_REDRAWS} random points in a row hit a zero "
        "denominator; the model may be singular at t0."
    )


def _minor_bound(row_bounds: list, r: int, extra=None) -> int:
    """Degree of any r×r minor's numerator: the sum of the r largest row numerator degrees."""
    ns = []
    for bnd in row_bounds:
        if bnd is None:
            continue
        if extra is not None:
            bnd = _bmul(bnd, extra)
            if bnd is None:
                continue
        ns.append(bnd[0])
    ns.sort(reverse=True)
    return max(sum(ns[:r]), 1)


def _pass_a(plan: _Plan, rng, trials: int, modes) -> dict:
    """All coordinates unknown: ranks order by order until one order adds nothing."""
    K_cap = plan.M + 1

    def run():
        primes = [_random_prime(rng) for _ in range(trials)]
        spec = _spec_a(plan, primes, rng, K_cap, modes)
        ev = _Taylor(plan, spec, K_cap, track=True)
        rows_all: list[np.ndarray] = []
        bounds_all: list = []
        ranks: list[int] = []
        while True:
            k = ev.k
            rows, bounds = ev.advance()
            rows_all.append(rows)
            bounds_all.extend(bounds)
            mats = np.concatenate(rows_all, axis=1)
            r = max(_rank(mats[b], p) for b, p in enumerate(primes))
            ranks.append(r)
            if r == plan.M or (k >= 1 and r == ranks[-2]) or k == K_cap:
                break
        return {"K": k, "rank": ranks[-1], "ranks": ranks, "bounds": bounds_all, "primes": primes}

    return _with_redraws(run, rng, plan, "all initial conditions unknown")


def _jacobians(prob: _Problem, rng, trials: int, K: int, *, track: bool, primes=None):
    """Pass B up to order K: per batch element the full Jacobian J_s and J_z = J_s·dι/dz."""
    plan = prob.plan

    def run():
        ps = primes or [_random_prime(rng) for _ in range(trials)]
        spec, zvals, dio, dio_bound = _spec_b(prob, ps, rng, K)
        ev = _Taylor(plan, spec, K, track=track)
        rows_all, bounds_all = [], []
        for _ in range(K + 1):
            rows, bounds = ev.advance()
            rows_all.append(rows)
            bounds_all.extend(bounds)
        js = np.concatenate(rows_all, axis=1)  # (B, R, M)
        jz = np.stack([_matmul(js[b], dio[b], p) for b, p in enumerate(ps)])
        return {
            "primes": ps,
            "js": js,
            "jz": jz,
            "z": zvals,
            "bounds": bounds_all,
            "dio_bound": dio_bound,
        }

    return _with_redraws(run, rng, plan, "at the known values")


# ---------------------------------------------------------------------------------------------------
# Identifiable combinations
# ---------------------------------------------------------------------------------------------------
def _prefer_positive(e: Sequence[int]) -> tuple[int, ...]:
    """±e, whichever has more positive entries (then: the first non-zero entry positive)."""
    e = tuple(int(x) for x in e)
    pos, neg = sum(x > 0 for x in e), sum(x < 0 for x in e)
    if neg > pos or (neg == pos and next((x for x in e if x), 0) < 0):
        return tuple(-x for x in e)
    return e


def _monomials(
    nvars: int, degree: int, ident_mask: Sequence[bool], limit: int = _MAX_CANDIDATES
) -> list[tuple[int, ...]] | None:
    """Exponent vectors with entries in [−1, degree] (identifiable variables: 0 or 1), total
    |degree| ≤ `degree`, involving at least one non-identifiable variable; simplest first. None
    when there are more than `limit`."""
    out: list[tuple[int, ...]] = []
    current: list[int] = []

    def extend(i: int, remaining: int) -> bool:
        if i == nvars:
            if any(x != 0 and not ident_mask[j] for j, x in enumerate(current)):
                out.append(tuple(current))
            return len(out) <= limit
        for x in (0, 1) if ident_mask[i] else (0, *range(1, degree + 1), -1):
            if abs(x) > remaining:
                continue
            current.append(x)
            ok = extend(i + 1, remaining - abs(x))
            current.pop()
            if not ok:
                return False
        return True

    if not extend(0, degree):
        return None
    # Simplest first: low degree, few negative exponents, few variables.
    out.sort(
        key=lambda e: (
            sum(abs(x) for x in e),
            sum(x < 0 for x in e),
            sum(x != 0 for x in e),
            [-x for x in e],
        )
    )
    return out


class _CombinationSearch:
    def __init__(self, prob: _Problem, K: int, rank: int, nonid: list[int], ident: list[int], rng):
        self.prob, self.K, self.rank = prob, K, rank
        self.nonid, self.ident, self.rng = nonid, ident, rng
        self.m = len(prob.z_names)
        self.k = self.m - rank
        self.points = 0
        self.symmetries: list[tuple[int, ...]] | None = None

    def _null_at(self, primes: list[int]):
        """Random points (one per prime) with full rank: their z values and null spaces."""
        out = []
        res = _jacobians(self.prob, self.rng, len(primes), self.K, track=False, primes=primes)
        for b, p in enumerate(primes):
            jz = res["jz"][b]
            n = _null_space(jz, p)
            if n.shape[1] != self.k:
                continue  # an unlucky point (rank too low): skip it
            out.append((p, res["z"][b].astype(object), n, jz))
        self.points += len(primes)
        return out

    @staticmethod
    def _grad_rows(monos, zs: np.ndarray, vecs: np.ndarray, p: int, var_idx) -> np.ndarray:
        """Rows ∇(z^α)·v = z^α Σ_i α_i v_i / z_i for each column v of `vecs`."""
        z = [int(zs[i]) for i in var_idx]
        zinv = [pow(v, -1, p) for v in z]
        powers = [
            [pow(zinv[i], 1, p), 1, *[pow(z[i], d, p) for d in range(1, 4)]] for i in range(len(z))
        ]
        rows = []
        for j in range(vecs.shape[1]):
            v = [int(vecs[i, j]) for i in var_idx]
            ratio = [v[i] * zinv[i] % p for i in range(len(z))]
            row = []
            for e in monos:
                val = 1
                s = 0
                for i, x in enumerate(e):
                    if x:
                        val = val * (powers[i][0] if x == -1 else powers[i][1 + x]) % p
                        s = (s + x * ratio[i]) % p
                row.append(val * s % p)
            rows.append(row)
        return np.array(rows, dtype=np.uint64)

    def _gradient(self, e_list, coeffs, zs, p, var_idx) -> list[int]:
        """∇f at z (full length m) for f = Σ c_α z^α, modulo p."""
        z = [int(zs[i]) for i in var_idx]
        g = [0] * self.m
        for e, c in zip(e_list, coeffs, strict=True):
            cp = _residue(c, p)
            mono = 1
            for i, x in enumerate(e):
                if x:
                    mono = mono * pow(z[i] if x > 0 else pow(z[i], -1, p), abs(x), p) % p
            for i, x in enumerate(e):
                if x:
                    g[var_idx[i]] = (g[var_idx[i]] + cp * x * mono * pow(z[i], -1, p)) % p
        return g

    def scalings(self) -> list[tuple[int, ...]] | None:
        """The null space as scaling symmetries z_i → λ^{n_i}·z_i, when it is spanned by such
        (integer vectors n, exact: reconstructed and verified at fresh points); else None.

        A scaling n is a null direction at z exactly when J(z)·(n ⊙ z) = 0: the null space divided
        by z must then be constant, so its reduced echelon form has small rational entries."""
        pts = self._null_at([_random_prime(self.rng)])
        if not pts:
            return None
        p, zs, n, _ = pts[0]
        zinv = np.array([pow(int(v), -1, p) for v in zs], dtype=np.uint64)
        logn = n * zinv[:, None] % np.uint64(p)
        basis, _ = _rref(logn.T, p)
        vectors = []
        for row in basis:
            fr = [_rational_reconstruction(int(a), p) if a else Fraction(0) for a in row.tolist()]
            if any(f is None for f in fr):
                return None
            lcm = math.lcm(*(f.denominator for f in fr))
            ints = [int(f * lcm) for f in fr]
            g = math.gcd(*ints)
            vectors.append(tuple(x // g for x in ints))
        if len(vectors) != self.k:
            return None
        # shortest lattice basis: readable symmetries (one per layer, not their sums)
        reduced = DomainMatrix(
            [[ZZ(x) for x in v] for v in vectors], (len(vectors), self.m), ZZ
        ).lll()
        vectors = [_prefer_positive(v) for v in reduced.to_Matrix().tolist()]
        for pp, zz, _, jz in self._null_at([_random_prime(self.rng) for _ in range(2)]):
            zint = [int(v) for v in zz]
            for v in vectors:
                field_ = np.array(
                    [[x % pp * zi % pp] for x, zi in zip(v, zint, strict=True)], np.uint64
                )
                if np.any(_matmul(jz, field_, pp)):
                    return None
        return vectors

    def run(self, budget_s: float) -> tuple[list[sympy.Expr], bool, list[str]]:
        notes: list[str] = []
        start = time.perf_counter()
        found: list[tuple[list, list[Fraction], list[int]]] = []  # (monos, coeffs, var_idx)
        # Scaling symmetries: the invariant monomials are an integer lattice, computed exactly.
        self.symmetries = self.scalings()
        if self.symmetries:
            support = [j for j in range(self.m) if any(v[j] for v in self.symmetries)]
            rows = np.array([[v[j] for j in support] for v in self.symmetries], dtype=int)
            kernel = integer_kernel(rows)
            if kernel:
                reduced = DomainMatrix(
                    [[ZZ(int(x)) for x in e] for e in kernel], (len(kernel), len(support)), ZZ
                ).lll()
                kernel = [_prefer_positive(r) for r in reduced.to_Matrix().tolist()]
            found = [([tuple(int(x) for x in e)], [Fraction(1)], support) for e in kernel]
            complete, chosen = self._select(found)
            if complete:
                return [self._expr(*c) for c in chosen], True, notes
            found = []
        stages = [
            (self.nonid, 2),
            (self.nonid, 3),
            (self.nonid + self.ident, 2),
            (self.nonid + self.ident, 3),
        ]
        # With nothing to combine (every invariant is a function of the identifiable unknowns), the
        # identifiable unknowns alone already reach the rank.
        complete = self.rank == len(self.ident)
        chosen: list = []
        for var_idx, degree in stages:
            if complete or time.perf_counter() - start > budget_s:
                break
            var_idx = sorted(var_idx)
            mask = [i in self.ident for i in var_idx]
            monos = _monomials(len(var_idx), degree, mask)
            if monos is None:
                notes.append(
                    f"identifiable combinations of degree {degree} in {len(var_idx)} unknowns: "
                    f"more than {_MAX_CANDIDATES} candidate monomials, not searched"
                )
                continue
            if not monos:
                continue
            p = _random_prime(self.rng)
            rows = []
            need = len(monos) + 2 * self.k + 4
            while sum(r.shape[0] for r in rows) < need:
                if time.perf_counter() - start > budget_s:
                    break
                for pp, zs, n, _ in self._null_at([p] * _BATCH):
                    rows.append(self._grad_rows(monos, zs, n, pp, var_idx))
            if sum(r.shape[0] for r in rows) < need:
                break
            sol = _null_space(np.concatenate(rows), p)  # (C, d)
            if sol.shape[1] == 0:
                continue
            basis, _ = _rref(sol.T, p)
            for vec in basis:
                coeffs = []
                ok = True
                for a in vec.tolist():
                    if a == 0:
                        coeffs.append(Fraction(0))
                        continue
                    q = _rational_reconstruction(int(a), p)
                    if q is None:
                        ok = False
                        break
                    coeffs.append(q)
                if ok:
                    found.append((monos, coeffs, var_idx))
            # keep only candidates verified at fresh points with fresh primes
            fresh = self._null_at([_random_prime(self.rng) for _ in range(2)])
            verified = []
            for monos_c, coeffs, vidx in found:
                good = bool(fresh)
                for pp, zs, n, _ in fresh:
                    g = self._gradient(monos_c, coeffs, zs, pp, vidx)
                    if np.any(_matmul(np.array([g], dtype=np.uint64), n, pp)):
                        good = False
                        break
                if good:
                    verified.append((monos_c, coeffs, vidx))
            found = verified
            complete, chosen = self._select(found)
        exprs = [self._expr(*c) for c in chosen] if found else []
        if not complete:
            spent = ", time budget spent" if time.perf_counter() - start > budget_s else ""
            if exprs:
                notes.append(
                    f"identifiable combinations: {len(exprs)} found, not a complete set: with the "
                    f"identifiable unknowns they do not reach the rank {self.rank} of the Jacobian "
                    f"(searched: Laurent polynomials of degree ≤ 3{spent})"
                )
            else:
                notes.append(
                    "identifiable combinations: none found among Laurent polynomials of degree ≤ 3 "
                    f"in the unknowns{spent}; identifiable functions of another form exist (the "
                    f"Jacobian has rank {self.rank})"
                )
        return exprs, complete, notes

    def _select(self, found):
        """Greedy: the identifiable unknowns first, then the simplest candidates that add rank."""
        chosen: list = []
        if not found:
            return self.rank == len(self.ident), chosen
        p = _random_prime(self.rng)
        pts = self._null_at([p])
        if not pts:
            return False, chosen
        _, zs, _, _ = pts[0]
        rows = [[1 if j == i else 0 for j in range(self.m)] for i in self.ident]
        base = _rank(np.array(rows, np.uint64).reshape(len(rows), self.m), p)

        def terms(c):
            return sum(1 for q in c[1] if q != 0)

        for cand in sorted(
            found,
            key=lambda c: (
                terms(c),
                sum(sum(x < 0 for x in e) for e, q in zip(c[0], c[1], strict=True) if q),
                max(sum(abs(x) for x in e) for e, q in zip(c[0], c[1], strict=True) if q),
            ),
        ):
            g = self._gradient(cand[0], cand[1], zs, p, cand[2])
            trial = [*rows, g]
            r = _rank(np.array(trial, np.uint64), p)
            if r > base:
                rows, base = trial, r
                chosen.append(cand)
            if base == self.rank:
                break
        return base == self.rank, chosen

    def _expr(self, monos, coeffs, var_idx) -> sympy.Expr:
        syms = [self.prob.z_symbols[i] for i in var_idx]
        terms = [(e, c) for e, c in zip(monos, coeffs, strict=True) if c != 0]
        lcm = math.lcm(*(c.denominator for _, c in terms))
        ints = [int(c * lcm) for _, c in terms]
        g = math.gcd(*ints)
        ints = [x // g for x in ints]
        if ints[0] < 0:
            ints = [-x for x in ints]
        expr = sympy.Integer(0)
        for (e, _), c in zip(terms, ints, strict=True):
            expr += c * sympy.Mul(*(s**x for s, x in zip(syms, e, strict=True)))
        return expr


# ---------------------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------------------
def _scaling_text(sym: Mapping[str, int]) -> str:
    """'CL, V, D scale together' or 'alpha → λ·alpha, x2(0) → λ·x2(0), gamma → gamma/λ'."""
    if all(e == 1 for e in sym.values()):
        return f"{', '.join(sym)} scale together"

    def one(n: str, e: int) -> str:
        if e > 0:
            return f"{n} → {'λ' if e == 1 else f'λ^{e}'}·{n}"
        return f"{n} → {n}/{'λ' if e == -1 else f'λ^{-e}'}"

    return ", ".join(one(n, e) for n, e in sym.items())


@dataclass(frozen=True, eq=False)
class StructuralIdentifiability:
    """Local structural identifiability of the unknowns of a `SymbolicModel`.

    **Fields:**
    - `names`: the unknowns: the parameters (not known), then the unknown initial conditions
      (``"x(0)"``); `kinds` says which ("parameter" or "initial condition").
    - `verdict_list`: per unknown, "locally identifiable" or "not identifiable".
    - `rank`: rank of the Jacobian of the output Taylor coefficients with respect to the unknowns;
      `nullity` = number of unknowns − rank.
    - `orders`: the highest derivative order of the outputs used (derivatives 0 … `orders`).
    - `certified`: True when that order provably suffices for the problem as posed (see the module
      docstring); False when special known values lower the generic rank, in which case a "not
      identifiable" verdict may be wrong (a later derivative could still add rank).
    - `combinations`: identifiable combinations (sympy expressions in the unknowns' symbols) of the
      non-identifiable unknowns; with the identifiable unknowns they generate the identifiable
      functions (locally) when `combinations_complete` is True.
    - `symmetries`: when the null directions are scaling symmetries, one dict per symmetry,
      unknown → integer n (z → λⁿ·z leaves the outputs unchanged); empty otherwise.
    - `error_bound`: an upper bound on the probability that the rank or a verdict is wrong.
    - `trials`, `primes`, `degree_bounds`: how the bound arises; `seed` reproduces the run.
    - `inputs`: input name → the function of t used, or "generic".
    - `known`: the known values used (initial conditions and parameters).
    - `notes`: what a reader must know.
    """

    model_name: str
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    verdict_list: tuple[str, ...]
    rank: int
    orders: int
    certified: bool
    combinations: tuple[sympy.Expr, ...]
    combinations_complete: bool | None
    symmetries: tuple[dict[str, int], ...]
    error_bound: float
    trials: int
    primes: tuple[int, ...]
    degree_bounds: tuple[int, int]
    inputs: dict[str, str]
    known: dict[str, str]
    notes: tuple[str, ...]
    seed: int | None
    seconds: float

    @property
    def size(self) -> int:
        return len(self.names)

    @property
    def nullity(self) -> int:
        return self.size - self.rank

    @property
    def verdicts(self) -> dict[str, str]:
        """Unknown → "locally identifiable" or "not identifiable"."""
        return dict(zip(self.names, self.verdict_list, strict=True))

    @property
    def identifiable(self) -> list[str]:
        """Locally identifiable unknowns."""
        return [n for n, v in self.verdicts.items() if v == LOCALLY_IDENTIFIABLE]

    @property
    def nonidentifiable(self) -> list[str]:
        return [n for n, v in self.verdicts.items() if v == NOT_IDENTIFIABLE]

    @property
    def parameters(self) -> dict[str, str]:
        """Verdicts of the parameters only."""
        return {
            n: v
            for n, v, k in zip(self.names, self.verdict_list, self.kinds, strict=True)
            if k == "parameter"
        }

    @property
    def initial_conditions(self) -> dict[str, str]:
        """Verdicts of the unknown initial conditions only."""
        return {
            n: v
            for n, v, k in zip(self.names, self.verdict_list, self.kinds, strict=True)
            if k != "parameter"
        }

    @property
    def symbols(self) -> dict[str, sympy.Symbol]:
        """Unknown name → the sympy symbol used in `combinations`."""
        return {n: sympy.Symbol(n) for n in self.names}

    def summary(self) -> Summary:
        rows = tuple(
            (n, k, v) for n, k, v in zip(self.names, self.kinds, self.verdict_list, strict=True)
        )
        head = [
            f"rank {self.rank} of {self.size} (Jacobian of the output derivatives 0…{self.orders} at t0)",
            "certified: this many derivatives suffice for the known values given"
            if self.certified
            else "NOT certified: special known values lower the generic rank; a 'not "
            "identifiable' verdict may be wrong",
            f"probability of a wrong rank or verdict ≤ {self.error_bound:.1e} ({self.trials} "
            "independent random points and primes; Schwartz–Zippel)",
            "inputs: " + (", ".join(f"{u} = {e}" for u, e in self.inputs.items()) or "none"),
        ]
        if self.known:
            head.append("known: " + ", ".join(f"{k} = {v}" for k, v in self.known.items()))
        head.extend(self.notes)
        tables = [
            Table(
                f"Structural identifiability of {self.model_name}",
                ("unknown", "kind", "verdict"),
                rows,
                tuple(head),
            )
        ]
        if self.symmetries:
            tables.append(
                Table(
                    "Scaling symmetries",
                    ("symmetry",),
                    tuple((_scaling_text(sym),) for sym in self.symmetries),
                    ("exact: each leaves every output derivative unchanged at every point",),
                )
            )
        if self.combinations:
            tables.append(
                Table(
                    "Identifiable combinations",
                    ("combination",),
                    tuple((str(c),) for c in self.combinations),
                    (
                        "with the identifiable unknowns, these generate every identifiable function"
                        " (locally)"
                        if self.combinations_complete
                        else "an incomplete set: more identifiable functions exist",
                    ),
                )
            )
        return Summary(tuple(tables))

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "names": list(self.names),
            "kinds": list(self.kinds),
            "verdicts": self.verdicts,
            "rank": self.rank,
            "orders": self.orders,
            "certified": self.certified,
            "combinations": [str(c) for c in self.combinations],
            "combinations_complete": self.combinations_complete,
            "symmetries": [dict(sym) for sym in self.symmetries],
            "error_bound": self.error_bound,
            "trials": self.trials,
            "primes": list(self.primes),
            "degree_bounds": list(self.degree_bounds),
            "inputs": dict(self.inputs),
            "known": dict(self.known),
            "notes": list(self.notes),
            "seed": self.seed,
            "seconds": self.seconds,
        }

    def __str__(self) -> str:
        return str(self.summary())

    def __repr__(self) -> str:
        return (
            f"StructuralIdentifiability({self.model_name}: rank {self.rank}/{self.size}, "
            f"nonidentifiable={self.nonidentifiable}, combinations={[str(c) for c in self.combinations]})"
        )


# ---------------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------------
def _known_map(value: Any, allowed: Sequence[str], argument: str, what: str) -> dict[str, Any]:
    """`known_ic` / `known_params`: a list of names (generic known values) or name → number|None."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Mapping):
        items = dict(value)
    elif isinstance(value, Sequence):
        items = {v: None for v in value}
    else:
        raise FimkitError(
            f"The '{argument}' argument of structural_identifiability must be a list of {what} "
            f"names or a dict of name → value (None: known but generic). Got {describe(value)}."
        )
    bad = [k for k in items if k not in allowed]
    if bad:
        raise FimkitError(
            f"The '{argument}' argument of structural_identifiability names unknown {what}(s) "
            f"{bad}; the {what}s are {list(allowed)}."
        )
    out = {}
    for k, v in items.items():
        if v is None:
            out[k] = None
            continue
        if isinstance(v, bool) or not isinstance(
            v, int | float | Fraction | np.integer | np.floating | sympy.Rational
        ):
            raise FimkitError(
                f"The '{argument}' argument of structural_identifiability must give numbers (or "
                f"None). Got {describe(v)} for {k!r}."
            )
        if not math.isfinite(float(v)):
            raise FimkitError(
                f"The '{argument}' argument of structural_identifiability must give finite numbers. "
                f"Got {v!r} for {k!r}."
            )
        if isinstance(v, float | np.floating):
            out[k] = Fraction(repr(float(v)))
        elif isinstance(v, sympy.Rational):
            out[k] = Fraction(int(v.p), int(v.q))
        else:
            out[k] = Fraction(int(v)) if isinstance(v, int | np.integer) else Fraction(v)
    return out


def structural_identifiability(
    model: SymbolicModel,
    *,
    known_ic: Sequence[str] | Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    known_params: Sequence[str] | Mapping[str, Any] | None = None,
    combinations: bool = True,
    trials: int = _DEFAULT_TRIALS,
    seed: int | None = None,
    time_budget: float = 20.0,
) -> StructuralIdentifiability:
    """Local structural identifiability of the parameters and unknown initial conditions.

    **Arguments:**
    - `model`: a `SymbolicModel`.
    - `known_ic`: states whose initial condition is known: a list of names (known, but generic
      values) or a dict state → number (None: generic). Overrides the model's `ic` for those
      states; the model's numeric and parameter-expression initial conditions are known anyway.
    - `inputs`: input name → function of t (a string or sympy expression) or None for a generic
      (unspecified) input; overrides the model's inputs.
    - `known_params`: parameters that are known: a list (generic known values) or dict name → value.
    - `combinations`: search identifiable combinations of the non-identifiable unknowns.
    - `trials`: independent random points and primes (each lowers the error bound).
    - `seed`: seed of the random points and primes (None: fresh randomness; the result records it).
    - `time_budget`: seconds allowed for the combination search.

    **Returns:** a `StructuralIdentifiability` with `.verdicts`, `.nonidentifiable`, `.rank`,
    `.orders`, `.combinations`, `.error_bound`, `.certified`, `.summary()`.
    """
    start = time.perf_counter()
    if not isinstance(model, SymbolicModel):
        raise FimkitError(
            "The first argument of structural_identifiability must be a fimkit SymbolicModel "
            f"(equations). Got {describe(model)}; wrap ODE right-hand sides in a SymbolicModel."
        )
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise FimkitError(
            f"The 'trials' argument of structural_identifiability must be an integer >= 1. Got "
            f"{describe(trials)}."
        )
    if not isinstance(time_budget, int | float) or not time_budget > 0:
        raise FimkitError(
            "The 'time_budget' argument of structural_identifiability must be a number of seconds "
            f"> 0. Got {describe(time_budget)}."
        )
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**63)
    rng = np.random.default_rng(seed)
    functions = model.input_functions(inputs)
    kic = _known_map(known_ic, model.states, "known_ic", "state")
    kpar = _known_map(known_params, model.params, "known_params", "parameter")
    plan = _Plan(model, functions)
    notes: list[str] = []
    if plan.floats:
        notes.append(
            "decimal numbers read as exact fractions: " + ", ".join(sorted(set(plan.floats)))
        )

    # The problem as posed: unknowns z and the map to the coordinates.
    z_names, z_kinds, z_symbols = [], [], []
    coord_map: list[tuple[str, Any]] = []
    known_desc: dict[str, str] = {}
    generic_known: list[str] = []
    param_sub: dict[sympy.Symbol, Any] = {}
    for q in plan.params:
        sym = model.symbol(q)
        if q in kpar:
            if kpar[q] is None:
                gname = f"__known_{q}"
                generic_known.append(gname)
                coord_map.append(("generic", gname))
                param_sub[sym] = sympy.Symbol(gname)
                known_desc[q] = "known (generic value)"
            else:
                coord_map.append(("value", kpar[q]))
                param_sub[sym] = sympy.Rational(kpar[q].numerator, kpar[q].denominator)
                known_desc[q] = str(kpar[q])
        else:
            coord_map.append(("z", len(z_names)))
            z_names.append(q)
            z_kinds.append("parameter")
            z_symbols.append(sympy.Symbol(q))
            param_sub[sym] = sympy.Symbol(q)
    ic_bases: list[tuple[int, int]] = []
    state_sub: dict[sympy.Symbol, Any] = {}
    ic_exprs = model.ic
    for s in plan.states:
        c = plan.state_index[s]
        name = ic_name(s)
        if s in kic and kic[s] is not None:
            v = kic[s]
            coord_map.append(("value", v))
            state_sub[model.symbol(s)] = sympy.Rational(v.numerator, v.denominator)
            known_desc[name] = str(v)
            continue
        expr = ic_exprs[s]
        if expr is None:
            if s in kic:
                gname = f"__known_{name}"
                generic_known.append(gname)
                coord_map.append(("generic", gname))
                state_sub[model.symbol(s)] = sympy.Symbol(gname)
                known_desc[name] = "known (generic value)"
            else:
                coord_map.append(("z", len(z_names)))
                z_names.append(name)
                z_kinds.append("initial condition")
                z_symbols.append(sympy.Symbol(name))
                state_sub[model.symbol(s)] = sympy.Symbol(name)
            continue
        e = (
            sympy.nsimplify(expr.xreplace(param_sub), rational=True)
            if expr.has(sympy.Float)
            else expr.xreplace(param_sub)
        )
        state_sub[model.symbol(s)] = e
        if e.is_Rational:
            coord_map.append(("value", Fraction(int(e.p), int(e.q))))
            known_desc[name] = str(e)
        elif e.is_number:
            raise _unsupported(
                f"the initial condition {s}(t0) = {expr}", "the model", "it is irrational"
            )
        else:
            if not _is_rational_function(e):
                raise _unsupported(
                    f"the initial condition {s}(t0) = {expr}",
                    "the model",
                    "initial conditions must be rational expressions in the parameters",
                )
            coord_map.append(("expr", e))
            known_desc[name] = str(expr)
            den_degree = _poly_degrees(e)[1]
            if den_degree > 0:
                ic_bases.append((c, den_degree))
    if plan.uses_time:
        coord_map.append(("value", Fraction(0)))
    if not z_names:
        raise FimkitError(
            f"structural_identifiability of {model.name!r}: nothing is unknown (every parameter "
            "and initial condition is known)."
        )

    # Exponentials and trigonometric terms at t0: random (transcendental) or exactly 1 / (0, 1).
    sub_a: dict = {}
    modes_a = (
        _classify_args([a for _, a in plan.exps], sub_a, "exp", "exp", plan.show),
        _classify_args([a for _, _, a in plan.angles], sub_a, "sin", "angle", plan.show),
    )
    sub_b = {**param_sub, **state_sub}
    if plan.uses_time:
        sub_b[plan.tau] = sympy.Integer(0)
    modes_b = (
        _classify_args([a for _, a in plan.exps], sub_b, "exp", "exp", plan.show),
        _classify_args([a for _, _, a in plan.angles], sub_b, "sin", "angle", plan.show),
    )
    prob = _Problem(
        plan=plan,
        z_names=z_names,
        z_kinds=z_kinds,
        z_symbols=z_symbols,
        coord_map=coord_map,
        pass_b_exp_modes=modes_b[0],
        pass_b_angle_modes=modes_b[1],
        generic_known=generic_known,
        ic_bases=ic_bases,
    )

    # Pass A: the number of derivatives, from the problem with every initial condition unknown.
    a = _pass_a(plan, rng, trials, modes_a)
    K, r_full = a["K"], a["rank"]
    d_a = _minor_bound(a["bounds"], r_full)
    # Pass B: the problem as posed, at order K.
    b = _jacobians(prob, rng, trials, K, track=True)
    primes_b = b["primes"]
    r_b = max(_rank(b["js"][i], p) for i, p in enumerate(primes_b))
    if r_b > r_full:  # the generic rank was underestimated: draw again with more trials
        a = _pass_a(plan, rng, trials + 2, modes_a)
        K, r_full = max(K, a["K"]), max(r_full, a["rank"])
        b = _jacobians(prob, rng, trials, K, track=True)
        primes_b = b["primes"]
        r_b = max(_rank(b["js"][i], p) for i, p in enumerate(primes_b))
    certified = r_b == r_full
    if not certified:
        K_ext = K + plan.M
        b = _jacobians(prob, rng, trials, K_ext, track=True)
        primes_b = b["primes"]
        notes.append(
            f"the known values lower the rank of the full Jacobian from {r_full} (generic) to "
            f"{r_b}: the verdicts use derivatives up to order {K_ext} and are not certified; a "
            "'not identifiable' verdict could be wrong"
        )
        K = K_ext
    ranks_z = [_rank(b["jz"][i], p) for i, p in enumerate(primes_b)]
    r = max(ranks_z)
    m = len(z_names)
    nonid = [False] * m
    for i, p in enumerate(primes_b):
        if ranks_z[i] != r:
            continue
        n = _null_space(b["jz"][i], p)
        for j in range(m):
            if np.any(n[j]):
                nonid[j] = True
    d_b = _minor_bound(b["bounds"], r, b["dio_bound"])
    events_a = len(a["ranks"])
    bound = events_a * (d_a / _P_LOW) ** trials + (m + 2) * (d_b / _P_LOW) ** trials
    bound = min(bound, 1.0)
    if bound > 1e-6:
        notes.append(
            f"the error bound {bound:.1e} is loose for this model (degree bounds {d_a}, {d_b}): "
            "pass more trials to lower it"
        )
    verdicts = tuple(NOT_IDENTIFIABLE if x else LOCALLY_IDENTIFIABLE for x in nonid)

    combos: list[sympy.Expr] = []
    complete: bool | None = None
    symmetries: list[dict[str, int]] = []
    if m - r == 0:
        complete = True
    elif combinations:
        search = _CombinationSearch(
            prob,
            K,
            r,
            [j for j in range(m) if nonid[j]],
            [j for j in range(m) if not nonid[j]],
            rng,
        )
        combos, complete, more = search.run(time_budget)
        notes.extend(more)
        for vec in search.symmetries or ():
            v = _prefer_positive(vec)
            symmetries.append({n: int(e) for n, e in zip(z_names, v, strict=True) if e})
        if combos:
            notes.append(
                f"combinations verified at fresh random points and primes ({search.points} "
                "points evaluated in the search)"
            )
    input_desc = {u: ("generic" if e is None else str(e)) for u, e in functions.items()}
    return StructuralIdentifiability(
        model_name=model.name,
        names=tuple(z_names),
        kinds=tuple(z_kinds),
        verdict_list=verdicts,
        rank=r,
        orders=K,
        certified=certified,
        combinations=tuple(combos),
        combinations_complete=complete,
        symmetries=tuple(symmetries),
        error_bound=float(bound),
        trials=trials,
        primes=tuple(primes_b),
        degree_bounds=(d_a, d_b),
        inputs=input_desc,
        known=known_desc,
        notes=tuple(notes),
        seed=seed,
        seconds=time.perf_counter() - start,
    )


__all__ = [
    "LOCALLY_IDENTIFIABLE",
    "STRUCTURAL_VERDICTS",
    "StructuralIdentifiability",
    "structural_identifiability",
]
