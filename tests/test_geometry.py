"""Information geometry: KL divergence, path length, geodesics, and their bad inputs.

Truths: closed-form KL divergences between Gaussian, log-normal, Poisson and Laplace distributions
(written out here with numpy); the Fisher–Rao geometry of the univariate normal family N(μ, σ),
whose metric per observation is diag(1/σ², 2/σ²): with x = μ/√2 it is √2 × the hyperbolic
half-plane, so the distance is
    d = 2√2 artanh( sqrt( ((μ1−μ2)² + 2(σ1−σ2)²) / ((μ1−μ2)² + 2(σ1+σ2)²) ) ),
geodesics are half-circles centred on the μ axis, and the vertical one is σ(τ) = σ0·exp(w τ/σ0)
for the initial velocity (0, w).
"""

import math
import re

import jax.numpy as jnp
import numpy as np
import pytest

import fimkit as fk
from fimkit.errors import FimkitError, ParameterError, SingularFIMError
from fimkit.geometry import geodesic, kl_divergence, path_length

# -- models shared by the module (compiled programs are cached on the instances) --------------------
TIMES = np.array([0.5, 1.0, 2.0, 4.0])
DECAY = fk.AnalyticModel(
    lambda t, p: p["A"] * jnp.exp(-p["k"] * t), params=["A", "k"], name="decay"
)
NORMAL = fk.AnalyticModel(lambda t, p: p["mu"], params=["mu"], name="normal_mean")
NORMAL_DESIGN = fk.Design(times=[0.0], n=1)
NORMAL_NOISE = fk.Gaussian(sigma="sigma")


def decay_mean(theta, times=TIMES):
    return theta[0] * np.exp(-theta[1] * times)


def gaussian_kl(m1, v1, m2, v2):
    return 0.5 * (np.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1.0)


def fisher_rao_normal(a, b):
    (m1, s1), (m2, s2) = a, b
    num = (m1 - m2) ** 2 + 2 * (s1 - s2) ** 2
    den = (m1 - m2) ** 2 + 2 * (s1 + s2) ** 2
    return 2 * math.sqrt(2) * math.atanh(math.sqrt(num / den))


# -- KL divergence ----------------------------------------------------------------------------------
def test_kl_gaussian_with_estimated_sigma_matches_closed_form():
    design = fk.Design(times=TIMES, n=3)
    th1, th2 = np.array([2.0, 0.5, 0.2]), np.array([2.3, 0.45, 0.3])
    r = kl_divergence(DECAY, th1, th2, design, noise=fk.Gaussian(sigma="sigma"))
    truth = 3 * np.sum(gaussian_kl(decay_mean(th1), th1[2] ** 2, decay_mean(th2), th2[2] ** 2))
    assert r.standard_error is None and r.method.startswith("exact")
    np.testing.assert_allclose(r.value, truth, rtol=1e-12)
    np.testing.assert_allclose(r.per_observation.sum(), truth, rtol=1e-12)
    assert r.names == ("A", "k", "sigma")


def test_kl_proportional_lognormal_and_poisson_match_closed_forms():
    design = fk.Design(times=TIMES)
    th1, th2 = np.array([2.0, 0.5]), np.array([1.8, 0.6])
    m1, m2 = decay_mean(th1), decay_mean(th2)
    prop = kl_divergence(DECAY, th1, th2, design, noise=fk.Proportional(b=0.2))
    np.testing.assert_allclose(
        prop.value, np.sum(gaussian_kl(m1, (0.2 * m1) ** 2, m2, (0.2 * m2) ** 2)), rtol=1e-12
    )
    # KL is invariant under y -> log y: the log-normal divergence is that of the log-means.
    logn = kl_divergence(DECAY, th1, th2, design, noise=fk.LogNormal(sigma=0.3))
    np.testing.assert_allclose(
        logn.value, np.sum((np.log(m1) - np.log(m2)) ** 2 / (2 * 0.09)), rtol=1e-12
    )
    pois = kl_divergence(DECAY, th1 * [50, 1], th2 * [50, 1], design, noise=fk.Poisson())
    l1, l2 = 50 * m1, 50 * m2
    np.testing.assert_allclose(pois.value, np.sum(l1 * np.log(l1 / l2) - l1 + l2), rtol=1e-12)


@pytest.mark.parametrize("scale", ["lin", "log"])
def test_kl_quadratic_approximation_is_second_order(scale):
    # A nonlinear mean and a variance that depends on θ: the ratio exact/quadratic → 1 like O(ε).
    noise = fk.Combined(a=0.1, b="b", form="variance")
    th = np.array([2.0, 0.5, 0.2])
    direction = np.array([1.0, -0.4, 0.5])
    eps = np.array([1e-1, 1e-2, 1e-3])
    gaps = []
    for e in eps:
        th2 = th * np.exp(e * direction) if scale == "log" else th + e * direction
        r = kl_divergence(DECAY, th, th2, fk.Design(times=TIMES), noise=noise, scale=scale)
        gaps.append(abs(r.ratio - 1.0))
    slope = np.polyfit(np.log(eps), np.log(gaps), 1)[0]
    np.testing.assert_allclose(slope, 1.0, atol=0.1)
    assert gaps[-1] < 1e-2


def test_kl_monte_carlo_agrees_with_exact_and_with_laplace_closed_form():
    design = fk.Design(times=TIMES)
    th1, th2 = np.array([2.0, 0.5, 0.2]), np.array([2.1, 0.46, 0.25])
    noise = fk.Gaussian(sigma="sigma")
    exact = kl_divergence(DECAY, th1, th2, design, noise=noise)
    mc = kl_divergence(DECAY, th1, th2, design, noise=noise, method="monte-carlo", n_samples=5000)
    assert mc.standard_error > 0
    np.testing.assert_allclose(mc.value, exact.value, atol=4 * mc.standard_error)
    # Laplace: no closed form in kl_divergence, so Monte Carlo; the truth is the closed form
    # log(b2/b1) + |Δm|/b2 + (b1/b2)·exp(−|Δm|/b1) − 1 per observation.
    th1, th2 = np.array([2.0, 0.5, 0.3]), np.array([2.2, 0.45, 0.4])
    lap = kl_divergence(DECAY, th1, th2, design, noise=fk.Laplace(b="b"), n_samples=5000)
    dm = np.abs(decay_mean(th1) - decay_mean(th2))
    b1, b2 = 0.3, 0.4
    truth = np.sum(np.log(b2 / b1) + dm / b2 + (b1 / b2) * np.exp(-dm / b1) - 1)
    assert lap.method.startswith("Monte Carlo")
    np.testing.assert_allclose(lap.value, truth, atol=4 * lap.standard_error)
    assert "KL(θ1 ‖ θ2)" in str(lap)


def test_kl_bad_input():
    design = fk.Design(times=TIMES)
    with pytest.raises(FimkitError, match="no closed form"):
        kl_divergence(
            DECAY, [2, 0.5, 1], [2, 0.6, 1], design, noise=fk.Laplace(b="b"), method="exact"
        )
    with pytest.raises(FimkitError, match="'method'"):
        kl_divergence(DECAY, [2, 0.5], [2, 0.6], design, noise=1.0, method="closed")
    with pytest.raises(ParameterError, match="theta2"):
        kl_divergence(DECAY, [2, 0.5], [2, 0.6, 1.0], design, noise=1.0)


# -- path length ------------------------------------------------------------------------------------
def test_path_length_of_a_line_at_fixed_sigma():
    # ds = |dμ|/σ per observation; n = 4 replicates multiply the metric by 4 and the length by 2.
    r = path_length(
        NORMAL, lambda t: jnp.array([3.0 * t, 1.5]), fk.Design(times=[0.0], n=4), noise=NORMAL_NOISE
    )
    np.testing.assert_allclose(r.length, 2 * 3.0 / 1.5, rtol=1e-12)
    assert r.error < 1e-10


def test_path_length_of_a_half_circle_is_the_fisher_rao_distance():
    # A geodesic of the normal family: a half-circle about μ = √2·c of radius R in (μ/√2, σ).
    c, R = 0.4, 2.0

    def arc(t):
        return jnp.array([jnp.sqrt(2.0) * (c + R * jnp.cos(t)), R * jnp.sin(t)])

    a, b = 0.3, 2.5
    r = path_length(NORMAL, arc, NORMAL_DESIGN, noise=NORMAL_NOISE, t_span=(a, b))
    truth = fisher_rao_normal(np.asarray(arc(a)), np.asarray(arc(b)))
    np.testing.assert_allclose(r.length, truth, rtol=1e-9)
    # The length does not depend on the parametrisation (t = s², dict output).
    r2 = path_length(
        NORMAL,
        lambda s: dict(zip(["mu", "sigma"], arc(s**2), strict=True)),
        NORMAL_DESIGN,
        noise=NORMAL_NOISE,
        t_span=(math.sqrt(a), math.sqrt(b)),
    )
    np.testing.assert_allclose(r2.length, truth, rtol=1e-9)


def test_path_leaving_the_domain_is_reported():
    with pytest.raises(ParameterError, match=r"leaves the parameter domain at t=0\.5.*sigma"):
        path_length(
            NORMAL, lambda t: jnp.array([0.0, 1.0 - 2.0 * t]), NORMAL_DESIGN, noise=NORMAL_NOISE
        )
    with pytest.raises(ParameterError, match="must return 2 values"):
        path_length(NORMAL, lambda t: jnp.array([t]), NORMAL_DESIGN, noise=NORMAL_NOISE)
    with pytest.raises(FimkitError, match="t0 < t1"):
        path_length(
            NORMAL, lambda t: jnp.array([t, 1.0]), NORMAL_DESIGN, noise=NORMAL_NOISE, t_span=(1, 0)
        )


# -- geodesics of the normal family (Christoffel form) ----------------------------------------------
@pytest.fixture(scope="module")
def normal_geodesic():
    return geodesic(NORMAL, [0.0, 1.0], [1.0, 0.3], NORMAL_DESIGN, noise=NORMAL_NOISE, t_end=2.0)


def test_normal_geodesic_distance_is_fisher_rao(normal_geodesic):
    g = normal_geodesic
    assert g.reason == "t_end" and g.form == "christoffel"
    np.testing.assert_allclose(g.t[-1], 2.0, rtol=1e-12)
    speed = math.sqrt(1.0**2 / 1.0 + 2 * 0.3**2 / 1.0)
    np.testing.assert_allclose(g.speed, speed, rtol=1e-7)
    # A geodesic of the hyperbolic plane minimises length: distance = speed × time.
    dist = [fisher_rao_normal(g.theta[0], th) for th in g.theta]
    np.testing.assert_allclose(dist, speed * g.t, rtol=1e-6, atol=1e-9)
    # It lies on a half-circle centred on the μ axis in (μ/√2, σ).
    x, s = g.theta[:, 0] / math.sqrt(2), g.theta[:, 1]
    center = (x[-1] ** 2 + s[-1] ** 2 - x[0] ** 2 - s[0] ** 2) / (2 * (x[-1] - x[0]))
    radius = np.hypot(x - center, s)
    np.testing.assert_allclose(radius, radius[0], rtol=1e-6)
    np.testing.assert_allclose(g.length[-1], g.distance, rtol=1e-4)


def test_normal_vertical_geodesic_closed_form():
    sigma0, w = 1.5, 0.6
    g = geodesic(NORMAL, [0.3, sigma0], [0.0, w], NORMAL_DESIGN, noise=NORMAL_NOISE, t_end=2.0)
    np.testing.assert_allclose(g.theta[:, 1], sigma0 * np.exp(w * g.t / sigma0), rtol=1e-7)
    np.testing.assert_allclose(g.theta[:, 0], 0.3, atol=1e-10)


def test_geodesic_user_event():
    g = geodesic(
        NORMAL,
        [0.0, 1.0],
        {"mu": 0.0, "sigma": 1.0},
        NORMAL_DESIGN,
        noise=NORMAL_NOISE,
        t_end=5.0,
        event=lambda t, p: p["sigma"] > 2.0,
    )
    assert g.reason == "event"
    # A boolean event stops at the end of the step where it became true: just past σ = 2, on the
    # vertical geodesic σ(t) = exp(t).
    assert 2.0 <= g.theta[-1, 1] < 2.2
    np.testing.assert_allclose(g.theta[-1, 1], np.exp(g.t[-1]), rtol=1e-7)
    assert "event" in g.message


# -- geodesic: bad input ----------------------------------------------------------------------------
def test_geodesic_rejects_zero_velocity():
    with pytest.raises(ParameterError, match="must be non-zero"):
        geodesic(NORMAL, [0.0, 1.0], [0.0, 0.0], NORMAL_DESIGN, noise=NORMAL_NOISE)
    with pytest.raises(ParameterError, match="finite"):
        geodesic(NORMAL, [0.0, 1.0], [np.nan, 1.0], NORMAL_DESIGN, noise=NORMAL_NOISE)


def test_geodesic_singular_start_names_the_null_direction():
    ex = fk.examples.pk_bolus()  # C = D/V·exp(−CL/V·t): scaling (CL, V, D) together is invisible
    with pytest.raises(
        SingularFIMError, match=r"0\.577·log CL \+ 0\.577·log V \+ 0\.577·log D"
    ) as exc:
        geodesic(ex.model, ex.theta, [1.0, 0.0, 0.0], ex.design, noise=ex.noise, scale="log")
    null = exc.value.null_directions[:, 0]
    np.testing.assert_allclose(np.abs(null), np.ones(3) / math.sqrt(3), atol=1e-8)


def test_geodesic_option_errors():
    with pytest.raises(FimkitError, match="'form'"):
        geodesic(NORMAL, [0.0, 1.0], [1.0, 0.0], NORMAL_DESIGN, noise=NORMAL_NOISE, form="fast")
    with pytest.raises(FimkitError, match="least-squares"):
        geodesic(
            NORMAL, [0.0, 1.0], [1.0, 0.0], NORMAL_DESIGN, noise=NORMAL_NOISE, form="least-squares"
        )
    with pytest.raises(FimkitError, match="'t_end'"):
        geodesic(NORMAL, [0.0, 1.0], [1.0, 0.0], NORMAL_DESIGN, noise=NORMAL_NOISE, t_end=-1.0)
    with pytest.raises(ParameterError, match="positive on the log scale"):
        geodesic(NORMAL, [0.0, 1.0], [1.0, 0.0], NORMAL_DESIGN, noise=NORMAL_NOISE, scale="log")


def test_geodesic_to_the_edge_where_the_metric_blows_up():
    # y = √a·t + b: in u = √a the model is linear, so the geodesic from a = 1 with velocity
    # (−1, 0) is u = 1 − τ/2, a(τ) = (1 − τ/2)², reaching the edge a = 0 at τ = 2, where the metric
    # in a (Σ t²/(4a)) blows up.
    model = fk.AnalyticModel(lambda t, p: jnp.sqrt(p["a"]) * t + p["b"], params=["a", "b"])
    g = geodesic(
        model, [1.0, 0.0], [-1.0, 0.0], fk.Design(times=[1.0, 2.0]), noise=1.0, t_end=1.9,
        rcond=1e-2,
    )  # fmt: skip
    assert g.reason == "singular_metric"
    assert re.search(r"blows up along 0\.9\d*·a", g.message)
    np.testing.assert_allclose(g.theta[:, 0], (1 - g.t / 2) ** 2, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(g.theta[:, 1], 0.0, atol=1e-10)
    # The path ends at the first output point past λmin/λmax = rcond, before the edge.
    assert g.eigenvalue_ratio[-1] < 1e-2 <= g.eigenvalue_ratio[-2]
    assert 1.3 <= g.t[-1] < 1.9
