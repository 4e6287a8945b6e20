"""Wald intervals, the delta method and prediction variance against closed forms."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import fimkit as fk


@pytest.fixture(scope="module")
def pk():
    ex = fk.examples.pk_bolus()
    F = fk.fisher_information(ex.model, ex.theta, ex.design, noise=ex.noise, scale="log")
    return ex, F.select(["CL", "V"])


def test_wald_intervals_on_log_scale_map_back(pk):
    ex, F = pk
    ci = fk.wald_intervals(F, alpha=0.1)
    c = np.linalg.inv(F.matrix)
    z = stats.norm.ppf(0.95)
    se = np.sqrt(np.diag(c))
    np.testing.assert_allclose(ci.se, se, rtol=1e-12)
    np.testing.assert_allclose(ci.lower, [2.0, 10.0] * np.exp(-z * se), rtol=1e-12)
    np.testing.assert_allclose(ci.upper, [2.0, 10.0] * np.exp(z * se), rtol=1e-12)
    assert ci["CL"] == (ci.lower[0], ci.upper[0])


def test_wald_intervals_on_linear_scale(pk):
    ex, F = pk
    Fl = F.to_scale("lin")
    ci = Fl.conf_int(0.05)
    se = np.sqrt(np.diag(np.linalg.inv(Fl.matrix)))
    np.testing.assert_allclose(ci.lower, Fl.theta - 1.959963984540054 * se, rtol=1e-12)
    # The RSE in percent is the same to first order on both scales.
    np.testing.assert_allclose(list(Fl.rse().values()), list(F.rse().values()), rtol=1e-10)


def test_delta_method_half_life_closed_form(pk):
    ex, F = pk
    res = fk.delta_method(lambda p: jnp.log(2.0) * p["V"] / p["CL"], ex.theta, F)
    t_half = np.log(2) * 10.0 / 2.0
    c = np.linalg.inv(F.matrix)  # covariance of (log CL, log V)
    var = t_half**2 * (c[0, 0] - 2 * c[0, 1] + c[1, 1])
    np.testing.assert_allclose(float(res.value), t_half, rtol=1e-12)
    np.testing.assert_allclose(float(res.se), np.sqrt(var), rtol=1e-10)
    # A linear-scale covariance gives the same first-order answer.
    Fl = F.to_scale("lin")
    res_lin = fk.delta_method(
        lambda p: jnp.log(2.0) * p["V"] / p["CL"],
        {"CL": 2.0, "V": 10.0},
        Fl.cov(),
        names=["CL", "V"],
    )
    np.testing.assert_allclose(float(res_lin.se), float(res.se), rtol=1e-10)


def test_prediction_variance_matches_finite_difference_gradient(pk):
    ex, F = pk
    theta = {"CL": 2.0, "V": 10.0, "D": 100.0}
    new = fk.Design(times=[1.0, 6.0, 24.0])
    band = fk.prediction_variance(ex.model, theta, new, fim=F)

    def conc(cl, v, t):
        return 100.0 / v * np.exp(-cl / v * t)

    t = np.array([1.0, 6.0, 24.0])
    h = 1e-6
    g = np.stack(
        [
            (conc(2.0 * np.exp(h), 10.0, t) - conc(2.0 * np.exp(-h), 10.0, t)) / (2 * h),
            (conc(2.0, 10.0 * np.exp(h), t) - conc(2.0, 10.0 * np.exp(-h), t)) / (2 * h),
        ],
        axis=1,
    )
    var = np.einsum("ij,jk,ik->i", g, np.linalg.inv(F.matrix), g)
    np.testing.assert_allclose(band.se[0][:, 0], np.sqrt(var), rtol=1e-6)
    np.testing.assert_allclose(band.mean[0][:, 0], conc(2.0, 10.0, t), rtol=1e-12)
    np.testing.assert_allclose(
        band.upper[0] - band.mean[0], band.mean[0] - band.lower[0], rtol=1e-12
    )


def test_summary_prints_and_renders_html(pk):
    ex, F = pk
    text = str(F.summary())
    assert "CL" in text and "Wald" in text
    assert "<table>" in F.summary()._repr_html_()
    d = F.to_dict()
    assert d["names"] == ["CL", "V"] and d["scale"] == "log" and d["rank"] == 2


def test_delta_method_keeps_parameters_outside_the_fim_fixed(pk):
    ex, F = pk  # F is about CL and V; D is known
    res = fk.delta_method(lambda p: p["D"] / p["V"], ex.theta, F)
    c = np.linalg.inv(F.matrix)
    # d(D/V)/d log V = −D/V; D is fixed.
    np.testing.assert_allclose(float(res.se), 10.0 * np.sqrt(c[1, 1]), rtol=1e-10)


def test_identifiable_combination_of_a_singular_fim_has_a_finite_bound():
    ex = fk.examples.pk_bolus()
    F = fk.fisher_information(ex.model, ex.theta, ex.design, noise=ex.noise, scale="log")
    # log(D/V) moves orthogonally to the (1, 1, 1) null direction: it is identifiable.
    res = fk.delta_method(lambda p: jnp.log(p["D"] / p["V"]), ex.theta, F)
    # Closed form: the reduced model C = C0·exp(−k t) with u = (log C0, log k) has the same
    # information as (log D/V, log CL/V); its inverse gives Var(log C0).
    t = np.asarray(ex.design.times)
    c = 10.0 * np.exp(-0.2 * t)
    J = np.stack([c, -0.2 * t * c], axis=1)
    var = np.linalg.inv(J.T @ J)[0, 0]
    np.testing.assert_allclose(float(res.se) ** 2, var, rtol=1e-8)
    with pytest.raises(fk.errors.SingularFIMError, match="CL"):
        fk.delta_method(lambda p: p["CL"], ex.theta, F)
