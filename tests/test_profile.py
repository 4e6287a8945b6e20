"""Profile likelihood: open-ended profiles, agreement with Wald, closed forms, bounds, bad input.

Truths: closed-form profiles (the Gaussian mean and σ; a straight line, where the profile is exactly
the Wald quadratic of ordinary least squares; an exponential decay, linear in its amplitude, whose
amplitude is maximised in closed form for each rate) and the closed-form limit of a saturating
model at vanishing rate (a line through the origin).
"""

import dataclasses
import io
import re

import jax.numpy as jnp
import numpy as np
import pytest

import fimkit as fk
from fimkit.errors import FimkitError, FitError, ParameterError
from fimkit.inference.profile import STOP_REASONS, ProfileLikelihood, profile_likelihood

Z95 = 1.959963984540054  # z_{0.975}
DROP95 = 0.5 * Z95**2  # ½χ²₁(0.95)

LINE = fk.AnalyticModel(lambda t, p: p["a"] + p["b"] * t, params=["a", "b"], outputs=["y"])
DECAY = fk.AnalyticModel(
    lambda t, p: p["A"] * jnp.exp(-p["k"] * t), params=["A", "k"], outputs=["y"]
)
# y = A(1 − e^{−kt}) sampled only while kt ≪ 1: the data see the initial slope A·k and barely the
# curvature, so A and k trade off.
SATURATING = fk.AnalyticModel(
    lambda t, p: -p["A"] * jnp.expm1(-p["k"] * t), params=["A", "k"], outputs=["y"]
)
CONSTANT = fk.AnalyticModel(lambda t, p: p["mu"] + 0.0 * t, params=["mu"], outputs=["y"])

RNG = np.random.default_rng(20240607)
T_LINE = np.linspace(0.0, 5.0, 8)
Y_LINE = 1.0 + 0.7 * T_LINE + 0.3 * RNG.normal(size=T_LINE.size)
SIGMA_LINE = 0.3
T_DECAY = np.array([0.5, 1.0, 2.0, 3.0, 5.0, 8.0])
Y_DECAY = 10.0 * np.exp(-0.3 * T_DECAY) + 0.2 * RNG.normal(size=T_DECAY.size)
SIGMA_DECAY = 0.2
T_SAT = np.linspace(0.1, 1.0, 8)
Y_SAT = -10.0 * np.expm1(-0.2 * T_SAT) + 0.1 * RNG.normal(size=T_SAT.size)
SIGMA_SAT = 0.1
Y_MEAN = 5.0 + 1.3 * RNG.normal(size=12)


def gauss_loglike(resid, sigma):
    return float(-0.5 * np.sum(resid**2) / sigma**2 - resid.size / 2 * np.log(2 * np.pi * sigma**2))


@pytest.fixture(scope="module")
def line_fit():
    return fk.fit(
        LINE,
        fk.Data(T_LINE, Y_LINE),
        noise=fk.Gaussian(sigma=SIGMA_LINE),
        theta0={"a": 1.0, "b": 1.0},
        scale="lin",
    )


@pytest.fixture(scope="module")
def line_profile(line_fit):
    return profile_likelihood(line_fit)


@pytest.fixture(scope="module")
def sat_profile():
    res = fk.fit(
        SATURATING,
        fk.Data(T_SAT, Y_SAT),
        noise=fk.Gaussian(sigma=SIGMA_SAT),
        theta0={"A": 10.0, "k": 0.2},
    )
    return profile_likelihood(res)


@pytest.fixture(scope="module")
def mean_profile():
    res = fk.fit(
        CONSTANT,
        fk.Data(np.arange(Y_MEAN.size, dtype=float), Y_MEAN),
        noise=fk.Gaussian(sigma="s"),
        theta0={"mu": 4.0, "s": 1.0},
    )
    return profile_likelihood(res)


# -- (a) practical non-identifiability -------------------------------------------------------------
def test_poorly_informed_rate_gives_an_open_profile(sat_profile):
    k = sat_profile["k"]
    assert k.open_lower and k.stop_lower in ("flat", "max_steps")
    assert k.lower == 0.0  # log scale: the open lower end is exp(−inf)
    # The rate is bounded above (the data are not saturating), and so is A below.
    assert not k.open_upper and k.stop_upper == "threshold"
    assert sat_profile["A"].open_upper and not sat_profile["A"].open_lower
    # The Wald interval knows nothing of this: it is finite on both sides.
    assert 0 < k.wald_lower < k.wald_upper < np.inf
    # Truth: as k → 0 the model tends to the line y = c·t (c = A·k), whose best fit is closed form;
    # the profile levels off at that log-likelihood, which lies within the threshold.
    c = np.sum(T_SAT * Y_SAT) / np.sum(T_SAT**2)
    limit = gauss_loglike(Y_SAT - c * T_SAT, SIGMA_SAT)
    np.testing.assert_allclose(k.loglike[0], limit, rtol=0, atol=1e-4)
    assert k.loglike_max - limit < DROP95
    # The re-optimised amplitude follows A ≈ c / k along the plateau.
    np.testing.assert_allclose(k.theta[0, 0] * k.grid[0], c, rtol=1e-3)


def test_structural_non_identifiability_gives_flat_profiles_along_the_symmetry():
    # One-compartment bolus with CL, V and D all unknown: scaling all three by the same factor
    # leaves the concentration unchanged (../shared/reference/pk_bolus.md), so every profile is
    # flat and the re-optimised parameters move along that symmetry.
    ex = fk.examples.pk_bolus()
    data = fk.Data(ex.design.times, fk.predict(ex.model, ex.theta, ex.design)["C"])
    with pytest.warns(fk.errors.IdentifiabilityWarning):
        res = fk.fit(ex.model, data, noise=ex.noise, theta0=ex.theta)
    prof = profile_likelihood(res, "V")
    v = prof["V"]
    assert v.open_lower and v.open_upper
    assert v.stop_lower == v.stop_upper == "flat"
    np.testing.assert_allclose(v.loglike, v.loglike_max, rtol=0, atol=1e-8)
    theta = v.theta  # columns CL, V, D
    np.testing.assert_allclose(theta[:, 0] / theta[:, 1], 2.0 / 10.0, rtol=1e-6)
    np.testing.assert_allclose(theta[:, 2] / theta[:, 1], 100.0 / 10.0, rtol=1e-6)
    assert v.grid.max() / v.grid.min() > np.exp(8)  # traced over several e-folds each way


def test_max_steps_leaves_the_sides_open(line_fit):
    prof = profile_likelihood(line_fit, "a", max_steps=2)
    a = prof["a"]
    assert a.stop_lower == a.stop_upper == "max_steps"
    assert (a.lower, a.upper) == (-np.inf, np.inf) and a.open_lower and a.open_upper
    assert a.grid.size == 5


# -- (b) agreement with Wald ---------------------------------------------------------------------
def test_straight_line_profile_is_the_wald_quadratic(line_fit, line_profile):
    X = np.column_stack([np.ones_like(T_LINE), T_LINE])
    beta = np.linalg.lstsq(X, Y_LINE, rcond=None)[0]
    se = SIGMA_LINE * np.sqrt(np.diag(np.linalg.inv(X.T @ X)))
    for j, name in enumerate(["a", "b"]):
        p = line_profile[name]
        assert p.stop_lower == p.stop_upper == "threshold"
        # Truth: ordinary least squares; the profile of a linear Gaussian model is exactly
        # ℓ̂ − ½((θ_j − θ̂_j)/se_j)², so the profile interval is the Wald interval.
        np.testing.assert_allclose(
            p.interval, (beta[j] - Z95 * se[j], beta[j] + Z95 * se[j]), rtol=1e-6
        )
        np.testing.assert_allclose(
            p.loglike - p.loglike_max, -0.5 * ((p.grid - beta[j]) / se[j]) ** 2, rtol=0, atol=1e-8
        )
        np.testing.assert_allclose(p.interval, p.wald, rtol=1e-3)
        # The other parameter at each point is the conditional least-squares estimate.
        other = 1 - j
        resid = Y_LINE[None, :] - X[:, j][None, :] * p.grid[:, None]
        cond = resid @ X[:, other] / (X[:, other] @ X[:, other])
        np.testing.assert_allclose(p.theta[:, other], cond, rtol=1e-7, atol=1e-9)
    assert np.all(line_profile["a"].converged)


def test_mildly_nonlinear_decay_profile_agrees_with_wald_and_closed_form():
    res = fk.fit(
        DECAY,
        fk.Data(T_DECAY, Y_DECAY),
        noise=fk.Gaussian(sigma=SIGMA_DECAY),
        theta0={"A": 8.0, "k": 0.4},
    )
    prof = profile_likelihood(res, "k")
    k = prof["k"]
    # Truth: for fixed k the model is linear in A, so Â(k) = Σ y e^{−kt} / Σ e^{−2kt}.
    e = np.exp(-np.outer(k.grid, T_DECAY))
    A_hat = (e @ Y_DECAY) / np.sum(e**2, axis=1)
    np.testing.assert_allclose(k.theta[:, 0], A_hat, rtol=1e-7)
    closed = [
        gauss_loglike(Y_DECAY - a * row, SIGMA_DECAY) for a, row in zip(A_hat, e, strict=True)
    ]
    np.testing.assert_allclose(k.loglike, closed, rtol=1e-10, atol=1e-9)
    # Nearly linear: the profile interval is within 10 % of the Wald interval (log scale).
    assert not (k.open_lower or k.open_upper)
    np.testing.assert_allclose(k.interval, k.wald, rtol=0.1)
    # The Wald interval beside it is the fit's own.
    np.testing.assert_allclose(k.wald, res.conf_int(0.05)["k"], rtol=1e-12)


# -- (c) closed form: Gaussian mean and σ --------------------------------------------------------
def test_gaussian_mean_profile_matches_closed_form(mean_profile):
    y, n = Y_MEAN, Y_MEAN.size
    mu = mean_profile["mu"]
    # ℓ_p(μ) = −n/2·log(2π σ̂²(μ)) − n/2 with σ̂²(μ) = mean((y − μ)²).
    s2 = np.array([np.mean((y - m) ** 2) for m in mu.grid])
    np.testing.assert_allclose(mu.loglike, -n / 2 * np.log(2 * np.pi * s2) - n / 2, rtol=1e-10)
    np.testing.assert_allclose(mu.theta[:, 1], np.sqrt(s2), rtol=1e-7)
    # The interval in closed form: n/2·log(σ̂²(μ)/σ̂²) = ½χ²₁ ⇔ (μ − ȳ)² = σ̂²(e^{2Δ/n} − 1).
    s2_hat = np.mean((y - y.mean()) ** 2)
    half = np.sqrt(s2_hat * np.expm1(2 * DROP95 / n))
    np.testing.assert_allclose(mu.interval, (y.mean() - half, y.mean() + half), rtol=1e-7)
    # The profile of σ: μ̂ = ȳ for every σ, ℓ_p(σ) = −n/2·log(2πσ²) − n σ̂²/(2σ²).
    s = mean_profile["s"]
    np.testing.assert_allclose(s.theta[:, 0], y.mean(), rtol=1e-9)
    np.testing.assert_allclose(
        s.loglike, -n / 2 * np.log(2 * np.pi * s.grid**2) - n * s2_hat / (2 * s.grid**2), rtol=1e-10
    )
    # Equal-tailed in z but asymmetric in σ: the profile interval reaches further up than down.
    assert s.upper - s.estimate > s.estimate - s.lower
    np.testing.assert_allclose(mean_profile.drop, DROP95, rtol=1e-12)


def test_alpha_sets_the_threshold(mean_profile):
    # With α = 0.32 the threshold is ½·z_{0.84}² ≈ ½ and the interval narrower (closed form).
    res = fk.fit(
        CONSTANT,
        fk.Data(np.arange(Y_MEAN.size, dtype=float), Y_MEAN),
        noise=fk.Gaussian(sigma="s"),
        theta0={"mu": 4.0, "s": 1.0},
    )
    narrow = profile_likelihood(res, "mu", alpha=0.32)
    z = 0.994457883209753  # z_{0.84}
    y, n = Y_MEAN, Y_MEAN.size
    half = np.sqrt(np.mean((y - y.mean()) ** 2) * np.expm1(z**2 / n))
    np.testing.assert_allclose(narrow["mu"].interval, (y.mean() - half, y.mean() + half), rtol=1e-7)
    assert narrow["mu"].upper < mean_profile["mu"].upper


# -- (d) bounds ----------------------------------------------------------------------------------
def test_bound_markers_where_another_parameter_is_held(line_fit):
    bounds = {"a": (0.9, 5.0), "b": (0.0, 0.78)}
    prof = profile_likelihood(line_fit, "b", bounds=bounds)
    b = prof["b"]
    # The profiled parameter stops at its own bound: that side is open.
    assert b.open_upper and b.stop_upper == "bound" and b.upper == np.inf
    np.testing.assert_allclose(b.grid[-1], 0.78, rtol=1e-12)
    assert b.stop_lower == "threshold"
    # Truth: the conditional estimate of a is mean(y − b t), clipped to its bounds.
    a_free = np.array([np.mean(Y_LINE - bb * T_LINE) for bb in b.grid])
    a_true = np.clip(a_free, *bounds["a"])
    np.testing.assert_allclose(b.theta[:, 0], a_true, rtol=1e-8)
    expected_marks = np.where(a_free < bounds["a"][0], -1, 0)
    np.testing.assert_array_equal(b.at_bound[:, 0], expected_marks)
    assert expected_marks.sum() <= -1  # the data make a hit its bound at least once
    np.testing.assert_array_equal(b.at_bound[:, 1], 0)  # never the profiled parameter
    hits = b.bound_hits()
    assert {(name, side) for _, name, side in hits} == {("a", "lower")}
    closed = [
        gauss_loglike(Y_LINE - a - bb * T_LINE, SIGMA_LINE)
        for a, bb in zip(a_true, b.grid, strict=True)
    ]
    np.testing.assert_allclose(b.loglike, closed, rtol=1e-10, atol=1e-10)
    assert "a at lower bound" in str(prof.summary())


# -- (e) bad input and warnings ------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.5, -0.1, "0.05", True])
def test_alpha_out_of_range(line_fit, alpha):
    with pytest.raises(FimkitError, match=r"'alpha'.*\(0, 1\).*Got " + re.escape(repr(alpha))):
        profile_likelihood(line_fit, alpha=alpha)


def test_unknown_names(line_fit):
    with pytest.raises(ParameterError, match=r"'names'.*\['zz'\].*\['a', 'b'\]"):
        profile_likelihood(line_fit, ["a", "zz"])
    with pytest.raises(ParameterError, match="'names'"):
        profile_likelihood(line_fit, [])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_steps": 0}, r"'max_steps'.*>= 1.*Got 0"),
        ({"max_steps": 2.5}, r"'max_steps'.*Got 2.5"),
        ({"resolution": 0}, r"'resolution'.*Got 0"),
        ({"max_step": -1.0}, r"'max_step'.*> 0.*Got -1.0"),
        ({"kind": "hessian"}, r"'kind'.*Got 'hessian'"),
    ],
)
def test_bad_options(line_fit, kwargs, match):
    with pytest.raises(FimkitError, match=match):
        profile_likelihood(line_fit, **kwargs)


def test_bad_fit_result_and_bounds(line_fit):
    with pytest.raises(FimkitError, match=r"'fit_result'.*FitResult.*Got \{'a': 1.0\}"):
        profile_likelihood({"a": 1.0})
    with pytest.raises(FitError, match=r"'bounds'.*unknown parameter 'c'"):
        profile_likelihood(line_fit, bounds={"c": (0.0, 1.0)})
    with pytest.raises(FitError, match=r"outside the 'bounds' for \['b'\]"):
        profile_likelihood(line_fit, bounds={"b": (2.0, 3.0)})
    with pytest.raises(ParameterError, match=r"No profile of 'zz'"):
        profile_likelihood(line_fit, "a")["zz"]


def test_a_fit_short_of_the_maximum_is_reported(line_fit):
    off = dataclasses.replace(line_fit, theta=line_fit.theta + np.array([0.05, -0.02]))
    with pytest.warns(fk.ConvergenceWarning, match="did not find the maximum"):
        profile_likelihood(off, "a")


# -- presentation --------------------------------------------------------------------------------
def test_summary_and_plot(sat_profile, line_profile):
    assert isinstance(sat_profile, ProfileLikelihood)
    text = str(sat_profile.summary())
    assert "open below" in text and "open above" in text and "Wald lower" in text
    assert "<table>" in sat_profile.summary()._repr_html_()
    fig = sat_profile.plot()
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 2
    assert fig.axes[0].get_xscale() == "log"
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"
    one = line_profile.plot("b")
    assert len(one.axes) == 1 and one.axes[0].get_xscale() == "linear"
    with pytest.raises(ParameterError, match="'names'"):
        line_profile.plot(["nope"])
    d = line_profile.to_dict()
    assert set(d) == {"a", "b"} and d["a"]["stop_lower"] in STOP_REASONS
