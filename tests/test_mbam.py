"""MBAM (geodesic to the boundary, the limit, the reduced model) and geodesic-accelerated LM.

Truths: ../shared/reference/sloppiness.md S2 (the sum of two exponentials, copied below with its
source); an independent integration of the same geodesic with scipy's solve_ivp and derivatives
written out by hand; the single-exponential refit by scipy's curve_fit; closed-form solutions of the
reduced models and the textbook limits of Michaelis–Menten kinetics (first order when Vmax and Km grow
together, zero order when Km → 0); the Rosenbrock function's known minimum.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import curve_fit

import fimkit as fk
from fimkit.errors import FitError, SingularFIMError
from fimkit.geometry import (
    BoundaryLimit,
    Geodesic,
    classify_limit,
    fit_geodesic_lm,
    geodesic,
    levenberg_marquardt,
    mbam,
    reduce_model,
)
from fimkit.models.symbolic import SymbolicModel

# sloppiness.md S2: y(t) = exp(−θ1 t) + exp(−θ2 t), t = {0.5, 1, 2}, θ = (1, 2), σ = 1; FIM
# eigenvalues in log parameters [0.0223, 0.4923]; the geodesic along the sloppiest direction reaches
# θ1 = θ2 at τ ≈ 0.25 with θ ≈ (1.370, 1.416).
S2_TIMES = np.array([0.5, 1.0, 2.0])
S2_THETA = np.array([1.0, 2.0])
S2_EIGENVALUES = [0.0223, 0.4923]
S2_TAU, S2_END = 0.25, [1.370, 1.416]
TWO_EXP = fk.AnalyticModel(
    lambda t, p: jnp.exp(-p["k1"] * t) + jnp.exp(-p["k2"] * t), params=["k1", "k2"], name="two_exp"
)
S2_DESIGN = fk.Design(times=S2_TIMES)
S2_NOISE = fk.Gaussian(sigma=1.0)
SPEED_LIMIT = 20.0  # the stopping rule of Transtrum's worked example (|v| grown 20-fold)


def s2_reference_geodesic(v0):
    """The S2 geodesic by hand: r = Σ exp(−e^{x_k} t), J and A_vv written out, solve_ivp (LSODA)."""

    def jac(x):
        e = np.exp(x)
        return np.column_stack([-S2_TIMES * e[k] * np.exp(-e[k] * S2_TIMES) for k in range(2)])

    def avv(x, v):
        e = np.exp(x)
        return sum(
            v[k] ** 2 * (-S2_TIMES * e[k] + (S2_TIMES * e[k]) ** 2) * np.exp(-e[k] * S2_TIMES)
            for k in range(2)
        )

    def rhs(t, y):
        x, v = y[:2], y[2:]
        J = jac(x)
        return np.concatenate([v, -np.linalg.solve(J.T @ J, J.T @ avv(x, v))])

    def too_fast(t, y):
        return np.linalg.norm(y[2:]) - SPEED_LIMIT * np.linalg.norm(v0)

    too_fast.terminal = True
    y0 = np.concatenate([np.log(S2_THETA), v0])
    sol = solve_ivp(rhs, (0, 1), y0, method="LSODA", events=too_fast, rtol=1e-11, atol=1e-13)
    return sol.t_events[0][0], np.exp(sol.y_events[0][0][:2])


@pytest.fixture(scope="module")
def s2():
    return mbam(TWO_EXP, S2_THETA, S2_DESIGN, noise=S2_NOISE, direction="both")


# -- S2: the geodesic ------------------------------------------------------------------------------
def test_s2_spectrum_and_geodesic_to_the_fold(s2):
    np.testing.assert_allclose(s2.eigenvalues, S2_EIGENVALUES, atol=5e-5)
    geo = s2.geodesic
    assert geo.reason == "speed" and geo.at_boundary
    np.testing.assert_allclose(geo.t[-1], S2_TAU, atol=0.01)
    np.testing.assert_allclose(geo.theta[-1], S2_END, atol=0.005)
    # The independent integration: same stopping time and point.
    tau, end = s2_reference_geodesic(s2.velocity0)
    np.testing.assert_allclose(geo.t[-1], tau, rtol=1e-6)
    np.testing.assert_allclose(geo.theta[-1], end, rtol=1e-6)
    # The metric speed is conserved along the geodesic; the metric degenerates towards the end.
    np.testing.assert_allclose(geo.speed, math.sqrt(S2_EIGENVALUES[0]), rtol=2e-3)
    np.testing.assert_allclose(geo.speed, geo.speed[0], rtol=1e-6)
    assert geo.eigenvalue_ratio[-1] < 0.01 * geo.eigenvalue_ratio[0]


def test_s2_least_squares_and_christoffel_forms_agree(s2):
    v0 = s2.velocity0
    kw = dict(noise=S2_NOISE, scale="log", t_end=1.0, speed_limit=SPEED_LIMIT)
    ls = geodesic(TWO_EXP, S2_THETA, v0, S2_DESIGN, form="least-squares", **kw)
    ch = geodesic(TWO_EXP, S2_THETA, v0, S2_DESIGN, form="christoffel", **kw)
    assert ls.form == "least-squares" and ch.form == "christoffel"
    np.testing.assert_allclose(ch.t[-1], ls.t[-1], rtol=1e-6)
    np.testing.assert_allclose(ch.theta[-1], ls.theta[-1], rtol=1e-6)


def test_s2_the_accelerating_direction_is_the_fold(s2):
    # Transtrum's sign rule (the parameter speed grows) picks the same boundary as "both".
    r = mbam(TWO_EXP, S2_THETA, S2_DESIGN, noise=S2_NOISE, refit=False)
    np.testing.assert_allclose(r.velocity0, s2.velocity0, atol=1e-12)
    assert r.limit.kind == "merge" and r.refit is None


# -- S2: the limit, the reduced model, the refit ----------------------------------------------------
def test_s2_mbam_reports_the_rates_merging(s2):
    lim = s2.limit
    assert lim.kind == "merge"
    assert set(lim.parameters) == {"k1", "k2"}
    assert "k1 and k2 merge" in lim.description
    np.testing.assert_allclose(lim.value, math.sqrt(S2_END[0] * S2_END[1]), atol=0.005)
    # The other direction runs k2 off to ∞ (the fast exponential vanishes), at a longer distance.
    alt = classify_limit(s2.alternative)
    assert alt.kind == "infinity" and alt.parameters == ("k2",)
    assert s2.alternative.distance > s2.geodesic.distance
    text = str(s2)
    assert "merge" in text and "χ²" in text


def test_s2_reduced_model_is_a_single_exponential_and_refits(s2):
    red = s2.reduced_model
    assert isinstance(red, fk.AnalyticModel) and red.params == ("k1",)
    # The reduced model is 2·exp(−k t).
    pred = fk.predict(red, [1.7], S2_TIMES)["y"]
    np.testing.assert_allclose(pred, 2 * np.exp(-1.7 * S2_TIMES), rtol=1e-14)
    # Refitted to the full model's predictions, as scipy's curve_fit does independently.
    y = np.exp(-S2_TIMES) + np.exp(-2 * S2_TIMES)
    (k,), _ = curve_fit(
        lambda t, k: 2 * np.exp(-k * t), S2_TIMES, y, p0=[1.4], xtol=1e-14, ftol=1e-14
    )
    chi2 = float(np.sum((y - 2 * np.exp(-k * S2_TIMES)) ** 2))
    np.testing.assert_allclose(s2.reduced_params["k1"], k, rtol=1e-6)
    np.testing.assert_allclose(s2.chi2, chi2, rtol=1e-5)
    assert s2.chi2 <= s2.chi2_boundary * (1 + 1e-9)
    assert s2.n_observations == 3 and s2.p_value > 0.9


# -- limits, reductions and bad input ---------------------------------------------------------------
def fake_geodesic(names, start, end, velocity):
    """A Geodesic with just the first and last points, to exercise the classifier."""
    theta = np.array([start, end], dtype=float)
    v = np.array([velocity, velocity], dtype=float)
    p = len(names)
    return Geodesic(
        tuple(names), np.array([0.0, 1.0]), theta, v, "log", np.ones(2), np.ones(2),
        np.eye(p), "speed", "", "least-squares", 2,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("start", "end", "velocity", "kind", "involved"),
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3e4], [0.0, 0.01, 1.0], "infinity", ("c",)),
        ([1.0, 2.0, 3.0], [1e-5, 2.0, 3.0], [-1.0, 0.02, 0.0], "zero", ("a",)),
        ([1.0, 2.0, 3.0], [1e3, 2e3, 3.0], [0.7, 0.7, 0.01], "ratio", ("a", "b")),
        ([1.0, 2.0, 3.0], [1.5, 2.0, 1e-3], [0.6, 0.0, -0.8], "combination", ("c", "a")),
    ],
)
def test_classify_limit(start, end, velocity, kind, involved):
    lim = classify_limit(fake_geodesic(["a", "b", "c"], start, end, velocity))
    assert lim.kind == kind and lim.parameters == involved
    if kind == "ratio":
        np.testing.assert_allclose(lim.value, 0.5, rtol=1e-12)


def test_reduce_an_ode_model_to_a_rate_at_zero():
    # dy/dt = −(k1 + k2) y, y(0) = 1: with k2 → 0 the reduced ODE is exp(−k1 t).
    model = fk.ODEModel(
        lambda t, y, p: [-(p["k1"] + p["k2"]) * y[0]], [1.0], lambda t, y, p: y[0],
        params=["k1", "k2"], states=["y"],
    )  # fmt: skip
    geo = fake_geodesic(["k1", "k2"], [1.0, 0.5], [1.0, 1e-6], [0.0, -1.0])
    red, words, _ = reduce_model(model, classify_limit(geo))
    assert isinstance(red, fk.ODEModel) and red.params == ("k1",) and words == "k2 set to 0"
    np.testing.assert_allclose(
        fk.predict(red, [0.7], S2_TIMES)["y"], np.exp(-0.7 * S2_TIMES), rtol=1e-7
    )


MICHAELIS_MENTEN = SymbolicModel({"x": "-Vmax*x/(Km + x)"}, {"y": "x"}, ["Vmax", "Km"], ic={"x": 1})


def limit_of(kind, parameters, direction, value=None):
    return BoundaryLimit(kind, parameters, "", {}, {}, np.asarray(direction, dtype=float), value)


def test_symbolic_reductions_of_michaelis_menten():
    import sympy

    x, c = sympy.Symbol("x"), sympy.Symbol("Vmax_over_Km")
    # Vmax, Km → ∞ with Vmax/Km fixed: first-order elimination, dx/dt = −(Vmax/Km)·x.
    red, words, start = reduce_model(
        MICHAELIS_MENTEN, limit_of("ratio", ("Vmax", "Km"), [0.7, 0.7], 0.5)
    )
    assert red.params == ("Vmax_over_Km",) and start == {"Vmax_over_Km": 0.5}
    assert sympy.simplify(red.rhs["x"] - (-c * x)) == 0
    np.testing.assert_allclose(
        fk.predict(red.to_ode(), [0.8], S2_TIMES)["y"], np.exp(-0.8 * S2_TIMES), rtol=1e-7
    )
    assert "Vmax_over_Km = Vmax/Km fixed" in words
    # Km → 0: saturated, zero-order elimination dx/dt = −Vmax.
    red, words, _ = reduce_model(MICHAELIS_MENTEN, limit_of("zero", ("Km",), [0.0, -1.0]))
    assert red.params == ("Vmax",) and red.rhs["x"] == -sympy.Symbol("Vmax")
    # Vmax → ∞ alone: the rate runs off; no substitution gives a model (a QSSA would).
    red, words, _ = reduce_model(MICHAELIS_MENTEN, limit_of("infinity", ("Vmax",), [1.0, 0.0]))
    assert red is None and "singular" in words


@pytest.mark.slow
def test_s2_as_a_symbolic_model_gives_the_reduced_equations():
    # The S2 example written as ODEs: the limit is taken in the equations (k2 := k1).
    sym = SymbolicModel(
        {"x1": "-k1*x1", "x2": "-k2*x2"}, {"y": "x1 + x2"}, ["k1", "k2"], ic={"x1": 1, "x2": 1}
    )
    # direction=-1 (the eigenvector's sign that leads to the fold) spares compiling the initial
    # acceleration; the refit is tested on the analytic model above.
    r = mbam(sym, S2_THETA, S2_DESIGN, noise=S2_NOISE, direction=-1, refit=False)
    assert r.limit.kind == "merge"
    np.testing.assert_allclose(r.geodesic.theta[-1], S2_END, atol=0.005)
    assert isinstance(r.reduced_model, SymbolicModel) and r.reduced_model.params == ("k1",)
    assert str(r.reduced_model.rhs["x2"]) == "-k1*x2"
    np.testing.assert_allclose(
        fk.predict(r.reduced_model.to_ode(), [1.3], S2_TIMES)["y"],
        2 * np.exp(-1.3 * S2_TIMES),
        rtol=1e-7,
    )
    assert "dx2/dt = -k1*x2" in str(r)


def test_mbam_singular_start_and_bad_direction():
    ex = fk.examples.pk_bolus()
    with pytest.raises(SingularFIMError, match="log CL") as exc:
        mbam(ex.model, ex.theta, ex.design, noise=ex.noise)
    np.testing.assert_allclose(
        np.abs(exc.value.null_directions[:, 0]), np.ones(3) / math.sqrt(3), atol=1e-8
    )
    with pytest.raises(fk.errors.FimkitError, match="'direction'"):
        mbam(TWO_EXP, S2_THETA, S2_DESIGN, noise=S2_NOISE, direction="up")


def test_geodesic_stops_when_a_log_parameter_runs_off(s2):
    # Away from the fold, k2 runs to ∞; a small max_log_change stops it early and says so.
    g = geodesic(
        TWO_EXP, S2_THETA, -s2.velocity0, S2_DESIGN, noise=S2_NOISE, scale="log", t_end=5.0,
        speed_limit=SPEED_LIMIT, max_log_change=0.5,
    )  # fmt: skip
    assert g.reason == "parameter_limit" and "k2 is running to ∞" in g.message
    np.testing.assert_allclose(np.max(np.abs(np.log(g.theta[-1] / S2_THETA))), 0.5, rtol=1e-6)


# -- geodesic-accelerated Levenberg–Marquardt -------------------------------------------------------
def rosenbrock():
    def r(x):
        return np.array([10 * (x[1] - x[0] ** 2), 1 - x[0]])

    def J(x):
        return np.array([[-20 * x[0], 10.0], [-1.0, 0.0]])

    def avv(x, v):
        return np.array([-20 * v[0] ** 2, 0.0])

    return r, J, avv


@pytest.mark.parametrize("accelerate", [False, True])
def test_levenberg_marquardt_on_rosenbrock(accelerate):
    r, J, avv = rosenbrock()
    res = levenberg_marquardt(r, J, [-1.2, 1.0], avv=avv if accelerate else None, gtol=1e-12)
    assert res.success and res.geodesic == accelerate
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-8)
    assert res.n_avv == (res.n_iterations if accelerate else 0)
    # ½|r(x0)|² = ½((10·(1 − 1.44))² + 2.2²), and the cost only ever decreases.
    np.testing.assert_allclose(res.history[0], 12.1, rtol=1e-14)
    assert np.all(np.diff(res.history) < 0)


def test_fit_geodesic_lm_finds_the_truth_of_noise_free_data():
    times = np.linspace(0.2, 4.0, 12)
    y = np.exp(-0.6 * times) + np.exp(-2.5 * times)
    data = fk.Data(times, y)
    for accelerate in (False, True):
        fit = fit_geodesic_lm(
            TWO_EXP, data, noise=fk.Gaussian(sigma=0.01), theta0=[0.3, 5.0], acceleration=accelerate
        )
        assert fit.success and "Levenberg–Marquardt" in fit.message
        np.testing.assert_allclose(fit.theta, [0.6, 2.5], rtol=1e-6)
    with pytest.raises(FitError, match="least-squares"):
        fit_geodesic_lm(TWO_EXP, data, noise=fk.Gaussian(sigma="s"), theta0=[0.3, 5.0, 0.1])
