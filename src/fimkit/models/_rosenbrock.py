"""Lean linearly implicit (Rosenbrock–Wanner) integrators for stiff systems: Rodas5P and Rodas4.

Why: an implicit Runge–Kutta method (Kvaerno5 in diffrax) solves a nonlinear system per stage by a
Newton (chord) iteration, whose iterations, convergence tests and failures are most of the cost of
a stiff solve and of its forward sensitivities. A Rosenbrock method builds one Newton step into the
method: one Jacobian ∂f/∂y (by `jax.jacfwd`) and one inverse (or LU factorisation) of
``I/(hγ) − J`` per step, then each stage is one matrix product (or pair of triangular solves).
Nothing iterates, nothing has to converge, and a step always costs the same.

Methods (`TABLEAUS`), both L-stable and stiffly accurate (the solution is the last stage, so very
stiff components are damped exactly), with an embedded error estimate and a dense output:

- ``"rodas5p"`` (the default): Steinebach (2023), 8 stages, order 5(4), dense output of order 4;
- ``"rodas4"``: Hairer & Wanner (1996), 6 stages, order 4(3), dense output of order 3.

The coefficients are in the "transformed" variables ``u_i = Σ_j γ_ij k_j`` of Hairer & Wanner
(Solving ODEs II, Section VI.7), which avoid products with J in the stages:

    (I/(hγ) − J) u_i = f(t + α_i h, y + Σ_j a_ij u_j) + Σ_j (c_ij / h) u_j + h d_i ∂f/∂t(t, y),

and the solution is ``y + Σ_j a_sj u_j + u_s``: the last stage's argument is the embedded solution,
so ``u_s`` is the error estimate. `tests/test_rosenbrock.py` checks every order condition (rooted
trees up to the method's order; one order less for the embedded solution), L-stability, and the
convergence orders of the solution and the dense output.

The loop mirrors `fimkit.models._rk`: the same error norm and integral step-size controller (with
the exponent of the embedded order), dense output at the sampling times so that the step sequence
never depends on them, and a status code instead of an exception. Sensitivities come from
forward-mode automatic differentiation through the loop (`jax.jvp`/`jax.jacfwd` of the caller):
the step sizes are chosen on the primal solution only (`stop_gradient`), and the tangents are the
exact derivatives of the discrete solution for that step sequence, computed cheaply: the tangent
of a stage solves ``E du = dr − dE u`` with the primal inverse (`lax.custom_linear_solve`), where
``dE u = −dJ·u`` uses the Jacobian's own tangent, formed once per step (forward over forward); the
derivative of the inverse is never formed. This is 2–3× cheaper than differentiating a
factorisation, and the explicit inverse beats LU solves on the small systems this solver is for
(each LAPACK call has a fixed cost far above its arithmetic). Towards a steady state, where
``I/(hγ) − J`` becomes nearly singular, `rosenbrock_steady` uses LU factors instead, with
``dE u = −d(J u)`` as one directional second derivative of the model per stage.

`rosenbrock_sensitivities` computes the same derivatives for a batch of directions without AD
through the loop: the state and its tangents are one array, and each stage of both is one batched
matrix–vector product (see `sensitivity_step`); on small models it is about a third faster than
`jax.jacfwd` through `rosenbrock_solve`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import lu_factor, lu_solve

from ._rk import adaptive_loop


@dataclass(frozen=True)
class RosenbrockTableau:
    """A stiffly accurate Rosenbrock method in transformed variables (see the module docstring).

    Stage i (0-based) solves ``(I/(hγ) − J) u_i = f(t + alpha_i h, y + Σ_j a[i][j] u_j)
    + Σ_j c[i][j] u_j / h + h d_i ∂f/∂t``; the solution is ``y + Σ_j a[-1][j] u_j + u_{s−1}``, the
    error estimate ``u_{s−1}``, and the dense output ``(1 − θ) y + θ (y1 + (1 − θ) Σ_r θ^r K_r)``
    with ``K_r = Σ_j dense[r][j] u_j``.
    """

    name: str
    gamma: float
    alpha: tuple[float, ...]
    d: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    c: tuple[tuple[float, ...], ...]
    dense: tuple[tuple[float, ...], ...]
    order: int  # of the solution; the embedded solution has order `order − 1`
    dense_order: int

    @property
    def stages(self) -> int:
        return len(self.alpha)


# Rodas4: Hairer & Wanner, Solving Ordinary Differential Equations II (2nd ed., Springer 1996),
# Section VI.4, coefficients of their code RODAS (METH=1), with its dense output of order 3.
RODAS4 = RosenbrockTableau(
    name="rodas4",
    gamma=0.25,
    alpha=(0.0, 0.386, 0.21, 0.63, 1.0, 1.0),
    d=(0.25, -0.1043, 0.1035, -0.0362, 0.0, 0.0),
    a=(
        (),
        (1.544,),
        (0.9466785280815826, 0.2557011698983284),
        (3.314825187068521, 2.896124015972201, 0.9986419139977817),
        (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895),
        (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895, 1.0),
    ),
    c=(
        (),
        (-5.6688,),
        (-2.430093356833875, -0.2063599157091915),
        (-0.1073529058151375, -9.594562251023355, -20.47028614809616),
        (7.496443313967647, -10.24680431464352, -33.99990352819905, 11.7089089320616),
        (
            8.083246795921522,
            -7.981132988064893,
            -31.52159432874371,
            16.31930543123136,
            -6.058818238834054,
        ),
    ),
    dense=(
        (
            10.12623508344586,
            -7.487995877610167,
            -34.80091861555747,
            -7.992771707568823,
            1.025137723295662,
        ),
        (
            -0.6762803392801253,
            6.087714651680015,
            16.43084320892478,
            24.76722511418386,
            -6.594389125716872,
        ),
    ),
    order=4,
    dense_order=3,
)

# Rodas5P: G. Steinebach, "Construction of Rosenbrock–Wanner method Rodas5P and numerical
# benchmarks within the Julia Differential Equations package", BIT Numerical Mathematics 63, 27
# (2023), doi:10.1007/s10543-023-00967-x: 8 stages, order 5 with an embedded order-4 solution,
# L-stable and stiffly accurate, dense output of order 4. The last two stages are evaluated at the
# running sum (a[6] = a[5] + e_5, a[7] = a[6] + e_6).
_A5P_6 = (
    -7.502846399306121,
    2.561846144803919,
    -11.627539656261098,
    -0.18268767659942256,
    0.030198172008377946,
)
RODAS5P = RosenbrockTableau(
    name="rodas5p",
    gamma=0.21193756319429014,
    alpha=(
        0.0,
        0.6358126895828704,
        0.4095798393397535,
        0.9769306725060716,
        0.4288403609558664,
        1.0,
        1.0,
        1.0,
    ),
    d=(
        0.21193756319429014,
        -0.42387512638858027,
        -0.3384627126235924,
        1.8046452872882734,
        2.325825639765069,
        0.0,
        0.0,
        0.0,
    ),
    a=(
        (),
        (3.0,),
        (2.849394379747939, 0.45842242204463923),
        (-6.954028509809101, 2.489845061869568, -10.358996098473584),
        (2.8029986275628964, 0.5072464736228206, -0.3988312541770524, -0.04721187230404641),
        _A5P_6,
        (*_A5P_6, 1.0),
        (*_A5P_6, 1.0, 1.0),
    ),
    c=(
        (),
        (-14.155112264123755,),
        (-17.97296035885952, -2.859693295451294),
        (147.12150275711716, -1.41221402718213, 71.68940251302358),
        (165.43517024871676, -0.4592823456491126, 42.90938336958603, -5.961986721573306),
        (
            24.854864614690072,
            -3.0009227002832186,
            47.4931110020768,
            5.5814197821558125,
            -0.6610691825249471,
        ),
        (
            30.91273214028599,
            -3.1208243349937974,
            77.79954646070892,
            34.28646028294783,
            -19.097331116725623,
            -28.087943162872662,
        ),
        (
            37.80277123390563,
            -3.2571969029072276,
            112.26918849496327,
            66.9347231244047,
            -40.06618937091002,
            -54.66780262877968,
            -9.48861652309627,
        ),
    ),
    dense=(
        (
            25.948786856663858,
            -2.5579724845846235,
            10.433815404888879,
            -2.3679251022685204,
            0.524948541321073,
            1.1241088310450404,
            0.4272876194431874,
            -0.17202221070155493,
        ),
        (
            -9.91568850695171,
            -0.9689944594115154,
            3.0438037242978453,
            -24.495224566215796,
            20.176138334709044,
            15.98066361424651,
            -6.789040303419874,
            -6.710236069923372,
        ),
        (
            11.419903575922262,
            2.8879645146136994,
            72.92137995996029,
            80.12511834622643,
            -52.072871366152654,
            -59.78993625266729,
            -0.15582684282751913,
            4.883087185713722,
        ),
    ),
    order=5,
    dense_order=4,
)
TABLEAUS = {t.name: t for t in (RODAS4, RODAS5P)}
FACTOR_MAX = 6.0  # Hairer & Wanner's bound for RODAS: a Jacobian per step rewards caution


def _padded(rows, s):
    out = np.zeros((max(s, len(rows)), s))
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def rosenbrock_step(
    tab: RosenbrockTableau, field, t, y, h, args, *, unroll: bool = True, linear: str = "inverse"
):
    """One step: returns ``(y1, err, K)``, with the dense-output vectors `K` (r, n).

    `unroll`: trace the stages one by one (faster to run) or one stage in a `fori_loop` (the
    model's right-hand side compiled once per step instead of once per stage: faster to compile
    for large models). `linear`: ``"inverse"`` (an explicit inverse of I/(hγ) − J per step: a
    matrix product per stage, fastest for the small systems this solver is for) or ``"lu"`` (LU
    factors: for nearly singular matrices, as in pre-equilibration to a steady state).
    """
    sg = jax.lax.stop_gradient
    n, s = y.shape[0], tab.stages
    if linear == "inverse":
        # f, ∂f/∂t and the Jacobian J = ∂f/∂y from one batch of n + 1 directional derivatives
        # (f is their common primal). The inverse of E = I/(hγ) − J is of the primal solution
        # only, formed once per step, so a stage solve is one matrix product. The Jacobian
        # itself carries its tangent (forward over forward, once per step): a tangent of a
        # stage, E du = dr − dE u, is then solved with the same inverse (`custom_linear_solve`)
        # and dE u = −dJ·u is a product, not a second derivative of the model per stage; the
        # derivative of the inverse is never formed.
        eye = jnp.eye(n + 1, dtype=y.dtype)

        def along(d):
            return jax.jvp(
                lambda tt, yy: field(tt, yy, args), (t, y), (d[0] * jnp.ones_like(t), d[1:])
            )

        f0, cols = jax.vmap(along, out_axes=(None, 0))(eye)
        ft, J = cols[0], cols[1:].T
        inv = jnp.linalg.inv(jnp.eye(n, dtype=y.dtype) / (h * tab.gamma) - sg(J))

        def matvec(v):
            return v / (h * tab.gamma) - J @ v

        def apply(r):
            return inv @ r

    else:
        f0, ft = jax.jvp(lambda tt: field(tt, y, args), (t,), (jnp.ones_like(t),))
        # LU factors of the primal E (for nearly singular E, e.g. at a steady state with
        # conservation laws, where an explicit inverse loses accuracy); dE u = −d(J u) is one
        # directional second derivative per stage.
        J = jax.jacfwd(lambda yy: field(sg(t), yy, sg(args)))(sg(y))
        lu = lu_factor(jnp.eye(n, dtype=y.dtype) / (h * tab.gamma) - J)

        def matvec(v):
            return v / (h * tab.gamma) - jax.jvp(lambda yy: field(t, yy, args), (y,), (v,))[1]

        def apply(r):
            return lu_solve(lu, r)

    def solve(rhs):
        return jax.lax.custom_linear_solve(matvec, rhs, lambda _, r: apply(r), symmetric=False)

    A, C = _padded(tab.a, s), _padded(tab.c, s)
    if unroll:
        us: list = []
        yi = y
        for i in range(s):
            if i == 0:
                rhs = f0
            else:
                yi = y + sum(a * u for a, u in zip(tab.a[i], us, strict=False) if a != 0.0)
                rhs = field(t + tab.alpha[i] * h, yi, args)
                rhs = rhs + sum(c * u for c, u in zip(tab.c[i], us, strict=True)) / h
            if tab.d[i] != 0.0:
                rhs = rhs + (h * tab.d[i]) * ft
            us.append(solve(rhs))
        us = jnp.stack(us)
    else:
        # One traced stage in a loop: the model's right-hand side (and its derivatives) are
        # compiled once per step instead of once per stage, which matters for large models.
        A_, C_ = jnp.asarray(A), jnp.asarray(C)
        alpha, d = jnp.asarray(tab.alpha), jnp.asarray(tab.d)
        us = jnp.zeros((s, n), dtype=y.dtype).at[0].set(solve(f0 + (h * tab.d[0]) * ft))

        def stage(i, us):
            yi = y + A_[i] @ us
            rhs = field(t + alpha[i] * h, yi, args) + (C_[i] @ us) / h + (h * d[i]) * ft
            return us.at[i].set(solve(rhs))

        us = jax.lax.fori_loop(1, s, stage, us)
    # Stiffly accurate: the solution is the last stage's argument plus its correction, which is
    # also the difference to the embedded solution (the error estimate).
    m = A[-1].copy()
    m[-1] += 1.0
    y1 = y + jnp.asarray(m) @ us
    K = jnp.asarray(_padded(tab.dense, s)[: len(tab.dense)]) @ us
    return y1, us[-1], K


def dense_eval(theta, y, y1, K):
    """The continuous extension at ``t + θh`` (see `RosenbrockTableau`)."""
    poly = K[-1]
    for r in range(K.shape[0] - 2, -1, -1):
        poly = K[r] + theta * poly
    return (1 - theta) * y + theta * (y1 + (1 - theta) * poly)


# Up to this many states and sensitivities ((P + 1) · n), `sensitivity_step` forms its matrices
# with multiply–reduce kernels instead of matrix products.
SMALL_SENSITIVITIES = 64

# A Gauss–Jordan inverse whose residual max |E X − I| exceeds this rejects the step (see
# `rosenbrock_sensitivities`).
INVERSE_RESIDUAL = 1e-10


def gauss_jordan_inverse(E):
    """``(X, r)``: the inverse of a small matrix `E` by Gauss–Jordan elimination without pivoting,
    and its residual ``r = max |E X − I|`` (NaN where a pivot was zero).

    Why: on a CPU, ``jnp.linalg.inv`` of an 8 × 8 matrix is a LAPACK factorisation, a pivot
    permutation and two triangular solves, each a call with a fixed cost (about 1.2 µs in all);
    the elimination unrolled is a few elementwise kernels (about 0.7 µs, and off the critical
    path of a Rosenbrock step). Without pivoting it can lose accuracy (a small leading pivot):
    the caller checks `r`.
    """
    n = E.shape[0]
    eye = jnp.eye(n, dtype=E.dtype)
    M = jnp.concatenate([E, eye], axis=1)
    for k in range(n):
        row = M[k] / M[k, k]
        M = (M - M[:, k : k + 1] * row[None, :]).at[k].set(row)
    X = M[:, n:]
    residual = jnp.sum(E[:, :, None] * X[None, :, :], axis=1) - eye
    return X, jnp.max(jnp.abs(residual))


def _combine(coeffs, vectors):
    """``Σ c_j v_j`` over the nonzero coefficients, as elementwise operations (not a matrix
    product: XLA fuses these into the kernel that uses them)."""
    terms = [float(c) * v for c, v in zip(coeffs, vectors, strict=False) if c != 0.0]
    return sum(terms[1:], terms[0])


def sensitivity_step(
    tab: RosenbrockTableau,
    field,
    aug,
    t,
    Y,
    h,
    args,
    dargs,
    *,
    inverse_residual=None,
    jacobian=None,
):
    """One step of the state and its forward sensitivities together: returns ``(Y1, err, K)``.

    ``Y = [y; S]`` stacks the state (n,) and its tangents along P directions (P, n); `dargs` are
    the tangents of `args` along the same directions (leading axis P); ``aug(t, Y)`` is the
    right-hand side of ``Y`` (the model and its tangents, see `sensitivity_field`). The numbers
    are those of differentiating `rosenbrock_step` by forward-mode AD (the exact derivatives of
    the discrete solution, the same to rounding), computed with fewer and cheaper kernels:

    - the Jacobian J, ∂f/∂t and f are formed once per step with their tangents dJ_k, d(∂f/∂t)_k
      and df_k (forward over forward);
    - the stage equations of the state and of its tangents, ``E u = r`` and
      ``E du_k = dr_k + dJ_k u`` with ``E = I/(hγ) − J``, are one solve for the whole stack:
      ``du_k = X dr_k + M_k r`` with ``X = E⁻¹`` and ``M_k = X dJ_k X`` formed once per step, so
      each stage is one batched matrix–vector product over ``[r_k, r]`` (P + 1 rows);
    - stage arguments, the solution and the dense output are weighted sums of the stages.

    `jacobian(t, y, args) -> (f, ∂f/∂t, ∂f/∂y)`, when given, replaces forward-mode AD of `field`
    along unit vectors for these three (a model's symbolic Jacobian, sparse: its derivatives along
    the P directions then cost what the Jacobian's nonzero entries cost).

    `inverse_residual`: None inverts E with LAPACK (pivoted LU); a number uses
    `gauss_jordan_inverse` and makes the error estimate infinite (the step is rejected) when the
    inverse's residual exceeds it or is not finite.
    """
    n, rows = Y.shape[1], Y.shape[0]
    y, S = Y[0], Y[1:]
    eye1 = jnp.eye(n + 1, dtype=y.dtype)

    def pack(yy, aa):
        if jacobian is not None:
            f, ft, J = jacobian(t, yy, aa)
            return f, jnp.concatenate([ft[None], J.T])

        def along(d):
            return jax.jvp(
                lambda tt, z: field(tt, z, aa), (t, yy), (d[0] * jnp.ones_like(t), d[1:])
            )

        return jax.vmap(along, out_axes=(None, 0))(eye1)  # f, then [∂f/∂t; Jᵀ]

    (f0, cols), (df0, dcols) = jax.vmap(
        lambda s, da: jax.jvp(pack, (y, args), (s, da)), out_axes=((None, None), 0)
    )(S, dargs)
    J, dJ = cols[1:].T, jnp.swapaxes(dcols[:, 1:], 1, 2)  # (n, n), (P, n, n)
    E = jnp.eye(n, dtype=y.dtype) / (h * tab.gamma) - J
    if inverse_residual is None:
        X, bad = jnp.linalg.inv(E), False
    else:
        X, residual = gauss_jordan_inverse(E)
        bad = ~(residual <= inverse_residual)  # NaN included
    # M_k = X dJ_k X: multiply–reduce kernels for a few small matrices (a matrix product's call
    # costs more than its arithmetic there: Boehm, 7 × 8, 3 % faster per FIM), matrix products
    # beyond (Fujita, 17 × 9: 15 against 27 ms per FIM).
    if rows * n <= SMALL_SENSITIVITIES:
        XdJ = jnp.sum(X[None, :, :, None] * dJ[:, None, :, :], axis=2)
        M = jnp.sum(XdJ[:, :, :, None] * X[None, None, :, :], axis=2)
    else:
        M = jnp.einsum("ij,kjl,lm->kim", X, dJ, X)
    # Row 0 solves the state's stage (X r); row k the tangent's (X dr_k + M_k r).
    G = jnp.concatenate(
        [
            jnp.broadcast_to(X, (rows, n, n)),
            jnp.concatenate([jnp.zeros((1, n, n), dtype=y.dtype), M]),
        ],
        axis=2,
    )

    def solve(V):
        V2 = jnp.concatenate([V, jnp.broadcast_to(V[0], (rows, n))], axis=1)
        return jnp.einsum("kij,kj->ki", G, V2)

    F0 = jnp.concatenate([f0[None], df0])
    FT = jnp.concatenate([cols[0][None], dcols[:, 0]])
    W: list = []
    for i in range(tab.stages):
        if i == 0:
            V = F0
        else:
            Yi = Y + _combine(tab.a[i], W)
            V = aug(t + tab.alpha[i] * h, Yi) + _combine(tab.c[i], W) / h
        if tab.d[i] != 0.0:
            V = V + (h * tab.d[i]) * FT
        W.append(solve(V))
    m = _padded(tab.a, tab.stages)[-1].copy()
    m[-1] += 1.0
    Y1 = Y + _combine(m, W)
    K = jnp.stack([_combine(row, W) for row in _padded(tab.dense, tab.stages)[: len(tab.dense)]])
    return Y1, jnp.where(bad, jnp.inf, W[-1]), K


def sensitivity_field(field, dargs):
    """``aug(t, Y, args)``: the right-hand side of ``Y = [y; S]`` (the model and its tangents along
    the rows of S and of `dargs`), by forward-mode AD of `field`."""

    def aug(t, Y, args):
        f, df = jax.vmap(
            lambda s, da: jax.jvp(lambda z, a: field(t, z, a), (Y[0], args), (s, da)),
            out_axes=(None, 0),
        )(Y[1:], dargs)
        return jnp.concatenate([f[None], df])

    return aug


def rosenbrock_sensitivities(
    field: Callable[[Any, Any, Any], Any],
    t0: Any,
    t1: Any,
    y0: Any,
    S0: Any,
    ts: Any,
    args: Any,
    dargs: Any,
    *,
    rtol: float,
    atol: float,
    max_steps: int,
    method: str = "rodas5p",
    inverse_residual: float | None = INVERSE_RESIDUAL,
    jacobian: Callable[[Any, Any, Any], Any] | None = None,
    dts: Any = None,
):
    """`rosenbrock_solve` with the forward sensitivities of the solution computed alongside.

    `S0` (P, n) are the derivatives of `y0` along P directions, `dargs` those of `args` (a pytree
    like `args` with a leading axis P). The step sizes are chosen on the state only, as when
    `rosenbrock_solve` is differentiated by `jax.jacfwd`, and the sensitivities are the same
    numbers (see `sensitivity_step`), in about two thirds of the time for the small stiff models
    of the PEtab benchmark collection. `t0` and `t1` carry no derivative here; `dts` (P, len(ts)),
    when given, are the derivatives of the sampling times, which add the interpolant's slope
    (as differentiating through `ts` would).
    `jacobian(t, y, args) -> (f, ∂f/∂t, ∂f/∂y)`: the model's own Jacobian, if it has one (see
    `sensitivity_step`); forward-mode AD of `field` otherwise.

    The matrices ``I/(hγ) − J`` are inverted by Gauss–Jordan elimination without pivoting
    (`gauss_jordan_inverse`); a step whose inverse has a residual above `inverse_residual` is
    rejected, so the step size shrinks until the elimination is accurate (the matrix becomes
    diagonally dominant). That can cost steps, or fail a solve that pivoting would have
    completed: a caller repeats a failed solve with ``inverse_residual=None`` (LAPACK's pivoted
    inverse, no check), or with `jax.jacfwd` through `rosenbrock_solve`, as PEtab problems do.

    Returns ``(ys, Ss, y1, S1, status)``: the states at `ts` (len(ts), n), their sensitivities
    (len(ts), P, n), the state at `t1` and its sensitivities, and a status code of
    `fimkit.models.base`.
    """
    tab = TABLEAUS[method]
    if jnp.ndim(y0) != 1 or jnp.ndim(S0) != 2 or jnp.shape(S0)[1] != jnp.shape(y0)[0]:
        raise ValueError(
            f"rosenbrock_sensitivities needs a state (n,) and sensitivities (P, n). Got shapes "
            f"{jnp.shape(y0)} and {jnp.shape(S0)}."
        )
    aug = sensitivity_field(field, dargs)
    Y0 = jnp.concatenate([jnp.asarray(y0)[None], jnp.asarray(S0, dtype=jnp.result_type(y0, float))])

    def interpolate(theta, Y, Y1, h, K, i=None):
        if dts is None:
            return dense_eval(theta, Y, Y1, K)
        value, slope = jax.jvp(
            lambda th: dense_eval(th, Y, Y1, K), (theta,), (jnp.ones_like(theta),)
        )
        return value.at[1:].add(slope[0][None, :] * (dts[:, i] / h)[:, None])

    def step(t, Y, F, h):
        Y1, err, K = sensitivity_step(
            tab,
            field,
            lambda tt, Z: aug(tt, Z, args),
            t,
            Y,
            h,
            args,
            dargs,
            inverse_residual=inverse_residual,
            jacobian=jacobian,
        )
        return Y1, err, K, F

    out, Y, _, status, _ = _loop(
        tab,
        step,
        interpolate,
        aug,
        (t0, t1, Y0, ts, args, rtol, atol, max_steps),
        primal=lambda Z: Z[0],
        indexed_samples=dts is not None,
    )
    if dts is not None:
        # Samples at t0 are y0 + (ts − t0) f(t0, y0) (see `adaptive_loop`): their time moves
        # them along f.
        at_start = (ts <= t0)[:, None, None]
        f0 = aug(t0, Y0, args)[0]
        out = out.at[:, 1:].add(jnp.where(at_start, dts.T[:, :, None] * f0[None, None, :], 0.0))
    return out[:, 0], out[:, 1:], Y[0], Y[1:], status


def _integrate(
    tab, field, t0, t1, y0, ts, args, rtol, atol, max_steps, terminate, unroll, linear="inverse"
):
    """The loop behind `rosenbrock_solve` and `rosenbrock_steady`: ``(ys, y, t, status, done)``."""
    if jnp.ndim(y0) != 1:
        raise ValueError(f"The Rosenbrock solver needs a state vector. Got shape {jnp.shape(y0)}.")

    def step(t, y, f, h):
        y1, err, K = rosenbrock_step(tab, field, t, y, h, args, unroll=unroll, linear=linear)
        return y1, err, K, f  # no first-same-as-last stage: f(t, y) is not reused

    def interpolate(theta, y, y1, h, K):
        return dense_eval(theta, y, y1, K)

    return _loop(
        tab,
        step,
        interpolate,
        field,
        (t0, t1, y0, ts, args, rtol, atol, max_steps),
        terminate=terminate,
    )


def _loop(tab, step, interpolate, field, problem, **options):
    """`adaptive_loop` with the Rosenbrock methods' settings; `problem` is ``(t0, t1, y0, ts,
    args, rtol, atol, max_steps)``."""
    t0, t1, y0, ts, args, rtol, atol, max_steps = problem
    # The error estimate is that of the embedded solution, of order `tab.order - 1`: O(h^order).
    # Samples a failed solve never reaches stay NaN, so the caller can say where it stopped.
    return adaptive_loop(
        step,
        interpolate,
        field,
        t0,
        t1,
        y0,
        ts,
        args,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        error_order=tab.order,
        factor_max=FACTOR_MAX,
        check_state=True,
        unreached=jnp.nan,
        **options,
    )


def rosenbrock_solve(
    field: Callable[[Any, Any, Any], Any],
    t0: Any,
    t1: Any,
    y0: Any,
    ts: Any,
    args: Any,
    *,
    rtol: float,
    atol: float,
    max_steps: int,
    method: str = "rodas5p",
    unroll: bool = True,
):
    """Integrate ``y' = field(t, y, args)`` from `t0` to `t1` with a Rosenbrock method (stiff).

    `y0` is a vector; `ts` must be sorted and within [t0, t1]; `method` is ``"rodas5p"`` or
    ``"rodas4"``; `unroll=False` compiles faster for large models (see `rosenbrock_step`).
    Returns ``(ys, y1, status)``: the states at `ts` (shape ``(len(ts), n)``), the state at `t1`, and a status code of `fimkit.models.base`; the contract of
    `fimkit.models._rk.tsit5_solve`.
    """
    out, y, _, status, _ = _integrate(
        TABLEAUS[method], field, t0, t1, y0, ts, args, rtol, atol, max_steps, None, unroll
    )
    return out, y, status


def rosenbrock_steady(
    field: Callable[[Any, Any, Any], Any],
    t0: Any,
    t_max: Any,
    y0: Any,
    args: Any,
    terminate: Callable[[Any, Any, Any], Any],
    *,
    rtol: float,
    atol: float,
    max_steps: int,
    method: str = "rodas5p",
    unroll: bool = True,
):
    """Integrate from `t0` until ``terminate(t, y, args)`` holds after a step (a steady state).

    Returns ``(y, t, status, reached)``: the state and time where it stopped, a status code, and
    whether `terminate` held (False: `t_max` came first, or the solve failed).
    """
    _, y, t, status, done = _integrate(
        TABLEAUS[method],
        field,
        t0,
        t_max,
        y0,
        jnp.zeros(0),
        args,
        rtol,
        atol,
        max_steps,
        terminate,
        unroll,
        "lu",  # the step grows without bound towards a steady state, where E becomes singular
    )
    return y, t, status, done


def rodas4_solve(field, t0, t1, y0, ts, args, *, rtol, atol, max_steps):
    """`rosenbrock_solve` with Rodas4."""
    return rosenbrock_solve(
        field, t0, t1, y0, ts, args, rtol=rtol, atol=atol, max_steps=max_steps, method="rodas4"
    )


def rodas5p_solve(field, t0, t1, y0, ts, args, *, rtol, atol, max_steps):
    """`rosenbrock_solve` with Rodas5P."""
    return rosenbrock_solve(
        field, t0, t1, y0, ts, args, rtol=rtol, atol=atol, max_steps=max_steps, method="rodas5p"
    )


__all__ = [
    "RODAS4",
    "RODAS5P",
    "RosenbrockTableau",
    "gauss_jordan_inverse",
    "rodas4_solve",
    "rodas5p_solve",
    "rosenbrock_sensitivities",
    "rosenbrock_solve",
    "rosenbrock_steady",
    "rosenbrock_step",
    "sensitivity_step",
]
