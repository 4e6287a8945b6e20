"""fimkit's Rosenbrock solvers (Rodas5P, Rodas4): coefficients, accuracy, sensitivities, statuses."""

from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm

import fimkit as fk
from fimkit.models import _rosenbrock as R
from fimkit.models.base import STATUS_MAX_STEPS, STATUS_OK

METHODS = ("rodas5p", "rodas4")


# ---------------------------------------------------------------- coefficients


@lru_cache(None)
def _trees(order):
    """The rooted trees with `order` nodes, each a sorted tuple of its subtrees."""
    if order == 1:
        return ((),)

    def partitions(n, largest):
        if n == 0:
            yield ()
            return
        for p in range(min(n, largest), 0, -1):
            for rest in partitions(n - p, p):
                yield (p, *rest)

    def forests(sizes):
        if not sizes:
            yield ()
            return
        for t in _trees(sizes[0]):
            for rest in forests(sizes[1:]):
                yield (t, *rest)

    found = {tuple(sorted(f)) for p in partitions(order - 1, order - 1) for f in forests(p)}
    return tuple(sorted(found))


def _size(t):
    return 1 + sum(_size(c) for c in t)


def _density(t):
    return _size(t) * int(np.prod([_density(c) for c in t])) if t else 1


def _weights(t, alpha, beta):
    """Elementary weights of a Rosenbrock method (Hairer & Wanner II, Section VI.7): a node with
    one child carries β = α + Γ (diagonal included), a node with several children α."""
    if not t:
        return np.ones(alpha.shape[0])
    if len(t) == 1:
        return beta @ _weights(t[0], alpha, beta)
    out = np.ones(alpha.shape[0])
    for c in t:
        out = out * (alpha @ _weights(c, alpha, beta))
    return out


def _standard_form(tab):
    """(α, Γ, b, b̂) of the method from its transformed coefficients."""
    s = tab.stages
    A, C = np.zeros((s, s)), np.zeros((s, s))
    for i in range(s):
        A[i, : len(tab.a[i])] = tab.a[i]
        C[i, : len(tab.c[i])] = tab.c[i]
    G = np.linalg.inv(np.eye(s) / tab.gamma - C)
    m = A[-1].copy()
    m[-1] += 1.0  # y1 = last stage argument + last stage
    return A @ G, G, m @ G, A[-1] @ G


@pytest.mark.parametrize("tab", [R.RODAS5P, R.RODAS4], ids=lambda t: t.name)
def test_coefficients_satisfy_the_order_conditions(tab):
    alpha, G, b, b_hat = _standard_form(tab)
    beta = alpha + G
    p = tab.order

    def residuals(w, order):
        return np.array(
            [
                w @ _weights(t, alpha, beta) - 1.0 / _density(t)
                for q in range(1, order + 1)
                for t in _trees(q)
            ]
        )

    assert [len(_trees(q)) for q in range(1, 6)] == [1, 1, 2, 4, 9]
    np.testing.assert_allclose(residuals(b, p), 0.0, atol=1e-13)
    np.testing.assert_allclose(residuals(b_hat, p - 1), 0.0, atol=1e-13)
    # ... and not one order more (the error estimate is of order p − 1 really).
    assert np.abs(residuals(b, p + 1)).max() > 1e-4
    assert np.abs(residuals(b_hat, p)).max() > 1e-4
    # Nodes and time coefficients are the row sums of α and Γ (non-autonomous problems).
    np.testing.assert_allclose(alpha.sum(axis=1), tab.alpha, rtol=0, atol=1e-13)
    np.testing.assert_allclose(G.sum(axis=1), tab.d, rtol=0, atol=1e-13)
    # Stability function R(z) = 1 + z bᵀ(I − zβ)⁻¹1: L-stable (R(∞) = 0, also for the
    # embedded method), and |R| <= 1 on the imaginary axis.
    one = np.ones(tab.stages)

    def stab(z, w):
        return 1 + z * w @ np.linalg.solve(np.eye(tab.stages) - z * beta, one)

    assert abs(stab(-1e12, b)) < 1e-9
    assert abs(stab(-1e12, b_hat)) < 1e-9
    for y in np.logspace(-2, 4, 60):
        assert abs(stab(1j * y, b)) <= 1 + 1e-12


def _nonlinear(t, y, args):
    return jnp.stack([-y[1] * jnp.cos(t) - 0.5 * y[0] ** 2, y[0] + 0.2 * jnp.sin(3 * t) * y[1]])


@pytest.mark.parametrize("tab", [R.RODAS5P, R.RODAS4], ids=lambda t: t.name)
def test_fixed_step_convergence_orders_of_solution_and_dense_output(tab):
    y0 = np.array([1.0, 0.5])
    ref = solve_ivp(
        lambda t, y: np.asarray(_nonlinear(t, y, None)),
        (0.0, 1.0),
        y0,
        method="DOP853",
        rtol=1e-13,
        atol=1e-15,
        dense_output=True,
    )
    step = jax.jit(lambda t, y, h: R.rosenbrock_step(tab, _nonlinear, t, y, h, None))
    ns = np.array([8, 16, 32])
    glob, dense = [], []
    for n in ns:
        h, y = 1.0 / n, jnp.asarray(y0)
        for k in range(n):
            y = step(jnp.asarray(k * h), y, jnp.asarray(h))[0]
        glob.append(np.abs(y - ref.sol(1.0)).max())
        # Local error of the interpolant inside the first step, from the exact start value.
        y1, _, K = step(jnp.asarray(0.0), jnp.asarray(y0), jnp.asarray(h))
        dense.append(np.abs(R.dense_eval(0.4, jnp.asarray(y0), y1, K) - ref.sol(0.4 * h)).max())
    glob_order = np.diff(np.log(glob)) / np.diff(np.log(1.0 / ns))
    dense_order = np.diff(np.log(dense)) / np.diff(np.log(1.0 / ns))
    # At least the method's order (Rodas4 converges a little faster on this problem).
    assert glob_order.min() > tab.order - 0.3, glob_order
    assert dense_order.min() > tab.dense_order + 1 - 0.3, dense_order


# ---------------------------------------------------------------- stiff problems


def _robertson(t, y, p):
    a = p["k1"] * y[0]
    b = p["k2"] * y[1] ** 2
    c = p["k3"] * y[1] * y[2]
    return [-a + c, a - b - c, b]


ROB_THETA = {"k1": 0.04, "k2": 3e7, "k3": 1e4}
ROB_TIMES = np.array([1e-3, 1.0, 10.0, 100.0, 1000.0, 1e4])


@lru_cache(None)
def _robertson_reference():
    k = ROB_THETA
    sol = solve_ivp(
        lambda t, y: np.array(_robertson(t, y, k)),
        (0.0, ROB_TIMES[-1]),
        [1.0, 0.0, 0.0],
        method="Radau",
        rtol=1e-12,
        atol=1e-20,
        t_eval=ROB_TIMES,
    )
    return sol.y.T


@pytest.mark.parametrize("method", METHODS)
def test_robertson_matches_a_tight_radau_reference(method):
    model = fk.ODEModel(
        _robertson,
        [1.0, 0.0, 0.0],
        lambda t, y, p: [y[0], y[1], y[2]],
        params=["k1", "k2", "k3"],
        states=["A", "B", "C"],
        outputs=["A", "B", "C"],
        solver=method,
        rtol=1e-10,
        atol=1e-14,
        max_steps=20_000,
    )
    assert model.solver_name == method
    pred = fk.predict(model, ROB_THETA, ROB_TIMES)
    ref = _robertson_reference()
    for i, name in enumerate("ABC"):
        np.testing.assert_allclose(pred[name], ref[:, i], rtol=2e-7, atol=1e-13)


def test_robertson_sensitivities_match_central_differences():
    def solve(logk):
        k = jnp.exp(logk)
        p = {"k1": k[0], "k2": k[1], "k3": k[2]}

        def field(t, y, args):
            return jnp.stack(_robertson(t, y, args))

        ys, _, status = R.rosenbrock_solve(
            field,
            0.0,
            ROB_TIMES[-1],
            jnp.array([1.0, 0.0, 0.0]),
            jnp.asarray(ROB_TIMES),
            p,
            rtol=1e-11,
            atol=1e-15,
            max_steps=20_000,
        )
        return ys, status

    x = jnp.log(jnp.array(list(ROB_THETA.values())))
    ys, status = jax.jit(solve)(x)
    assert int(status) == STATUS_OK
    S = jax.jit(jax.jacfwd(lambda x: solve(x)[0]))(x)
    f = jax.jit(lambda x: solve(x)[0])
    eps = 1e-5
    for j in range(3):
        e = jnp.zeros(3).at[j].set(eps)
        fd = (f(x + e) - f(x - e)) / (2 * eps)
        # Scaled per state: B is of order 1e-5, A and C of order 1.
        scale = np.abs(np.asarray(ys)).max(axis=0)
        np.testing.assert_allclose(S[..., j] / scale, fd / scale, rtol=0, atol=2e-6)


@pytest.mark.parametrize(("method", "P"), [("rodas5p", 4), ("rodas4", 4), ("rodas5p", 24)])
def test_sensitivities_in_one_loop_equal_forward_mode_ad_of_the_solve(method, P):
    """`rosenbrock_sensitivities` (states and tangents in one loop, the stage equations of both
    solved together) gives the numbers of `jax.jacfwd` through `rosenbrock_solve`: the same step
    sequence, so they agree to rounding; directions move the initial state, the arguments (a
    time-dependent forcing makes ∂f/∂t matter) and the sampling times, and Robertson's problem is
    stiff. 24 directions: beyond `SMALL_SENSITIVITIES`, the matrices are matrix products."""
    assert (P + 1) * 3 > R.SMALL_SENSITIVITIES or P == 4

    def field(t, y, args):
        k, amp = args
        f = _robertson(t, y, {"k1": k[0], "k2": k[1], "k3": k[2]})
        return jnp.stack(f) + amp * jnp.sin(t) * jnp.array([1e-3, 0.0, -1e-3]) * y[0]

    ts = jnp.asarray(ROB_TIMES[:4])
    k0 = jnp.array(list(ROB_THETA.values()))
    y00 = jnp.array([1.0, 0.0, 0.0])
    rng = np.random.default_rng(3)
    dk = jnp.asarray(rng.normal(size=(P, 3))) * k0
    dy0 = jnp.asarray(rng.normal(size=(P, 3))) * jnp.array([1.0, 0.0, 0.1])
    damp = jnp.asarray(rng.normal(size=P))
    opts = dict(rtol=1e-9, atol=1e-13, max_steps=20_000, method=method)

    # Sampling times that move with the directions too (not the first or the last).
    dts = jnp.asarray(rng.normal(size=(P, ts.shape[0]))).at[:, 0].set(0.0).at[:, -1].set(0.0)

    def solve(z):
        args = (k0 + z @ dk, 0.5 + z @ damp)
        return R.rosenbrock_solve(field, 0.0, ts[-1], y00 + z @ dy0, ts + z @ dts, args, **opts)[0]

    S_ad = jax.jit(jax.jacfwd(solve))(jnp.zeros(P))  # (nt, n, P)
    ys, Ss, y1, S1, status = jax.jit(
        lambda: R.rosenbrock_sensitivities(
            field, 0.0, ts[-1], y00, dy0, ts, (k0, 0.5), (dk, damp), dts=dts, **opts
        )
    )()
    assert int(status) == STATUS_OK
    np.testing.assert_allclose(ys, solve(jnp.zeros(P)), rtol=1e-13, atol=1e-18)
    np.testing.assert_allclose(ys[-1], y1, rtol=0, atol=0)
    np.testing.assert_allclose(Ss[-1], S1, rtol=0, atol=0)
    scale = np.abs(np.asarray(S_ad)).max(axis=(0, 1))  # per direction
    np.testing.assert_allclose(
        np.moveaxis(np.asarray(Ss), 1, 2) / scale, S_ad / scale, rtol=0, atol=1e-11
    )


def test_sensitivities_in_one_loop_match_central_differences():
    """Against finite differences of tightly solved states (independent of any AD)."""

    def field(t, y, k):
        return jnp.stack(_robertson(t, y, {"k1": k[0], "k2": k[1], "k3": k[2]}))

    ts = jnp.asarray(ROB_TIMES)
    x = jnp.log(jnp.array(list(ROB_THETA.values())))
    opts = dict(rtol=1e-11, atol=1e-15, max_steps=20_000)
    k = jnp.exp(x)
    ys, Ss, _, _, status = jax.jit(
        lambda: R.rosenbrock_sensitivities(
            field,
            0.0,
            ts[-1],
            jnp.array([1.0, 0.0, 0.0]),
            jnp.zeros((3, 3)),
            ts,
            k,
            jnp.diag(k),
            **opts,
        )
    )()
    assert int(status) == STATUS_OK
    f = jax.jit(
        lambda x: R.rosenbrock_solve(
            field, 0.0, ts[-1], jnp.array([1.0, 0.0, 0.0]), ts, jnp.exp(x), **opts
        )[0]
    )
    scale = np.abs(np.asarray(ys)).max(axis=0)
    eps = 1e-5
    for j in range(3):
        e = jnp.zeros(3).at[j].set(eps)
        fd = (f(x + e) - f(x - e)) / (2 * eps)
        np.testing.assert_allclose(Ss[:, j] / scale, fd / scale, rtol=0, atol=2e-6)


def test_sensitivities_in_one_loop_report_statuses_and_shapes():
    ys, Ss, _, _, status = R.rosenbrock_sensitivities(
        lambda t, y, a: -a * y,
        0.0,
        10.0,
        jnp.ones(2),
        jnp.ones((1, 2)),
        jnp.array([1.0, 10.0]),
        1.0,
        jnp.ones(1),
        rtol=1e-10,
        atol=1e-12,
        max_steps=3,
    )
    assert int(status) == STATUS_MAX_STEPS
    assert np.isnan(np.asarray(ys)[-1]).all() and np.isnan(np.asarray(Ss)[-1]).all()
    with pytest.raises(ValueError, match=r"sensitivities \(P, n\)"):
        R.rosenbrock_sensitivities(
            lambda t, y, a: -y,
            0.0,
            1.0,
            jnp.ones(2),
            jnp.ones(2),
            jnp.ones(1),
            None,
            None,
            rtol=1e-8,
            atol=1e-8,
            max_steps=10,
        )


def test_gauss_jordan_inverse_and_its_residual():
    """Elimination without pivoting: an inverse with a tiny residual where no row exchange is
    needed; a residual that says so where one is (a zero pivot gives NaN, a tiny one a large
    residual)."""
    rng = np.random.default_rng(0)
    inv = jax.jit(R.gauss_jordan_inverse)
    E = np.eye(8) * 3.0 + rng.normal(size=(8, 8))
    X, r = inv(jnp.asarray(E))
    np.testing.assert_allclose(X, np.linalg.inv(E), rtol=1e-12, atol=1e-12)
    assert float(r) < 1e-13
    assert np.isnan(float(inv(jnp.array([[0.0, 1.0], [1.0, 0.0]]))[1]))
    assert float(inv(jnp.array([[1e-14, 1.0], [1.0, 1.0]]))[1]) > R.INVERSE_RESIDUAL


def test_sensitivities_reject_steps_whose_eliminated_inverse_is_inaccurate():
    """A step whose inverse (elimination without pivoting) has a residual above the bound is
    rejected: with no residual accepted the solve fails (the caller repeats it); with LAPACK's
    inverse (None) the result is the one of forward-mode AD through `rosenbrock_solve`."""

    def field(t, y, k):
        return jnp.stack(_robertson(t, y, {"k1": k[0], "k2": k[1], "k3": k[2]}))

    ts = jnp.asarray(ROB_TIMES[:3])
    k = jnp.array(list(ROB_THETA.values()))
    y0 = jnp.array([1.0, 0.0, 0.0])
    opts = dict(rtol=1e-8, atol=1e-12, max_steps=5_000)

    def run(residual):
        return jax.jit(
            lambda: R.rosenbrock_sensitivities(
                field,
                0.0,
                ts[-1],
                y0,
                jnp.zeros((3, 3)),
                ts,
                k,
                jnp.diag(k),
                inverse_residual=residual,
                **opts,
            )
        )()

    assert int(run(-1.0)[4]) != STATUS_OK
    ys, Ss, _, _, status = run(None)
    assert int(status) == STATUS_OK
    S_ad = jax.jit(
        jax.jacfwd(lambda x: R.rosenbrock_solve(field, 0.0, ts[-1], y0, ts, jnp.exp(x), **opts)[0])
    )(jnp.log(k))
    scale = np.abs(np.asarray(ys)).max(axis=0)
    np.testing.assert_allclose(
        np.moveaxis(np.asarray(Ss), 1, 2) / scale[:, None],
        S_ad / scale[:, None],
        rtol=0,
        atol=1e-10,
    )


@pytest.mark.parametrize("method", METHODS)
def test_stiff_linear_system_matches_the_matrix_exponential(method):
    # Eigenvalues −1, −1e3 and −1e6 mixed by a rotation; y(t) = expm(t·M(λ)) y0, and the
    # sensitivity to the slow rate λ is the derivative of the matrix exponential.
    Q = np.linalg.qr(np.array([[1.0, 2.0, 0.5], [-1.0, 1.0, 1.0], [0.3, -0.2, 1.0]]))[0]
    y0 = np.array([1.0, -0.5, 2.0])
    ts = np.array([0.0, 1e-6, 1e-3, 0.1, 1.0, 1.0, 5.0])

    def M(lam):
        return jnp.asarray(Q) @ jnp.diag(jnp.array([-lam, -1e3, -1e6])) @ jnp.asarray(Q.T)

    def solve(lam):
        ys, y1, status = R.rosenbrock_solve(
            lambda t, y, a: M(a) @ y,
            0.0,
            5.0,
            jnp.asarray(y0),
            jnp.asarray(ts),
            lam,
            rtol=1e-10,
            atol=1e-12,
            max_steps=10_000,
            method=method,
        )
        return ys, y1, status

    lam = 1.0
    ys, y1, status = jax.jit(solve)(lam)
    assert int(status) == STATUS_OK

    # The closed form: expm(t M) = Q diag(e^{−λt}, e^{−1e3 t}, e^{−1e6 t}) Qᵀ.
    def closed(a):
        return jnp.stack(
            [jnp.asarray(Q) @ (jnp.exp(-t * jnp.array([a, 1e3, 1e6])) * (Q.T @ y0)) for t in ts]
        )

    exact = np.asarray(closed(lam))
    np.testing.assert_allclose(
        exact[3], expm(0.1 * np.asarray(M(lam))) @ y0, rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(ys, exact, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(y1, exact[-1], rtol=1e-7, atol=1e-9)
    # Samples at t0 are the initial state, at t1 the final state, repeated times agree.
    np.testing.assert_allclose(ys[0], y0, rtol=0, atol=0)
    np.testing.assert_allclose(ys[-1], y1, rtol=0, atol=0)
    np.testing.assert_allclose(ys[4], ys[5], rtol=0, atol=0)
    dys = jax.jit(jax.jacfwd(lambda a: solve(a)[0]))(lam)
    dexact = jax.jacfwd(closed)(lam)
    np.testing.assert_allclose(dys, dexact, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_non_autonomous_prothero_robinson(method):
    # y' = λ(y − φ(t)) + φ'(t), λ = −1e6, y(0) = φ(0): the solution is φ(t) = sin(t) + t²/4;
    # a method that mishandles ∂f/∂t loses its accuracy here.
    def field(t, y, lam):
        phi, dphi = jnp.sin(t) + t**2 / 4, jnp.cos(t) + t / 2
        return lam * (y - phi) + dphi

    ts = jnp.linspace(0.0, 3.0, 7)
    ys, y1, status = R.rosenbrock_solve(
        field,
        0.0,
        3.0,
        jnp.zeros(1),
        ts,
        -1e6,
        rtol=1e-9,
        atol=1e-12,
        max_steps=1000,
        method=method,
    )
    assert int(status) == STATUS_OK
    np.testing.assert_allclose(y1[0], np.sin(3.0) + 9.0 / 4, rtol=1e-9, atol=0)
    # The dense output between steps is less accurate than the steps on a problem this stiff
    # (the steps are long: |λh| ~ 1e5), Rodas4's order-3 interpolant more so than Rodas5P's.
    tol = 5e-6 if method == "rodas5p" else 2e-4
    np.testing.assert_allclose(ys[:, 0], np.sin(ts) + ts**2 / 4, rtol=0, atol=tol)


def test_oral_absorption_ode_matches_closed_form_predictions_and_fim():
    closed, ode = fk.examples.pk_oral(), fk.examples.pk_oral_ode(solver="rodas5p")
    assert ode.model.solver_name == "rodas5p"
    p1 = fk.predict(closed.model, closed.theta, closed.design)
    p2 = fk.predict(ode.model, ode.theta, ode.design)
    np.testing.assert_allclose(p2["C"], p1["C"], rtol=1e-8, atol=1e-10)
    for scale in ("lin", "log"):
        F1 = fk.fisher_information(
            closed.model, closed.theta, closed.design, noise=closed.noise, scale=scale
        )
        F2 = fk.fisher_information(ode.model, ode.theta, ode.design, noise=ode.noise, scale=scale)
        np.testing.assert_allclose(F2.matrix, F1.matrix, rtol=1e-6, atol=0)


def test_kinase_cascade_fim_agrees_with_a_tight_dopri8_solve():
    ex = fk.examples.kinase_cascade(solver="rodas5p", rtol=1e-10, atol=1e-12)
    ref = fk.examples.kinase_cascade(solver="dopri8", rtol=1e-12, atol=1e-14)
    F = fk.fisher_information(ex.model, ex.theta, ex.design, noise=ex.noise, scale="log")
    G = fk.fisher_information(ref.model, ref.theta, ref.design, noise=ref.noise, scale="log")
    np.testing.assert_allclose(F.matrix, G.matrix, rtol=1e-6, atol=1e-6 * np.abs(G.matrix).max())


# ---------------------------------------------------------------- statuses and options


def test_max_steps_is_reported_as_a_status_and_a_solver_error():
    ys, y1, status = R.rosenbrock_solve(
        lambda t, y, a: -y,
        0.0,
        10.0,
        jnp.ones(2),
        jnp.array([1.0, 10.0]),
        None,
        rtol=1e-10,
        atol=1e-12,
        max_steps=3,
    )
    assert int(status) == STATUS_MAX_STEPS
    model = fk.ODEModel(
        _robertson,
        [1.0, 0.0, 0.0],
        lambda t, y, p: [y[0], y[2]],
        params=["k1", "k2", "k3"],
        states=["A", "B", "C"],
        outputs=["A", "C"],
        solver="rodas5p",
        max_steps=5,
    )
    with pytest.raises(fk.errors.SolverError, match="maximum number of steps"):
        fk.predict(model, ROB_THETA, ROB_TIMES)


def test_steady_state_stops_at_the_condition_or_at_t_max():
    def field(t, y, k):
        return jnp.stack([1.0 - k * y[0], y[0] - y[1]])

    def near_steady(t, y, k):
        return jnp.sqrt(jnp.mean(field(t, y, k) ** 2)) < 1e-9

    y, t, status, reached = R.rosenbrock_steady(
        field, 0.0, 1e9, jnp.zeros(2), 2.0, near_steady, rtol=1e-10, atol=1e-12, max_steps=1000
    )
    assert bool(reached) and int(status) == STATUS_OK and 10.0 < float(t) < 1e9
    np.testing.assert_allclose(y, [0.5, 0.5], rtol=1e-8, atol=0)
    y, t, status, reached = R.rosenbrock_steady(
        field, 0.0, 1.0, jnp.zeros(2), 2.0, near_steady, rtol=1e-10, atol=1e-12, max_steps=1000
    )
    assert not bool(reached) and int(status) == STATUS_OK
    np.testing.assert_allclose(float(t), 1.0, rtol=0, atol=0)


def test_unknown_solver_names_list_the_rosenbrock_methods():
    with pytest.raises(fk.errors.ModelError, match="rodas5p"):
        fk.ODEModel(
            lambda t, y, p: [-y[0]], [1.0], lambda t, y, p: y[0], ["a"], ["y"], solver="rodas9"
        )
