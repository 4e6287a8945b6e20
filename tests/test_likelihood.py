"""Likelihoods, score, expected vs observed information, fitting, nuisance parameters."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import fimkit as fk
from fimkit.errors import DataError, FimkitError

T = np.array([0.5, 1.0, 2.0, 3.0, 5.0, 8.0])
DECAY = fk.AnalyticModel(
    lambda t, p: p["A"] * jnp.exp(-p["k"] * t), params=["A", "k"], outputs=["y"]
)
THETA = {"A": 10.0, "k": 0.3}
F_TRUE = 10.0 * np.exp(-0.3 * T)
# Poisson regression with a log link: mean exp(a + b t).
LOGLINK = fk.AnalyticModel(
    lambda t, p: jnp.exp(p["a"] + p["b"] * t), params=["a", "b"], outputs=["y"]
)


@pytest.mark.parametrize(
    "noise, theta, y, expected",
    [
        (fk.Gaussian(sigma=0.5), THETA, F_TRUE + 0.3, stats.norm(F_TRUE, 0.5).logpdf(F_TRUE + 0.3)),
        (
            fk.LogNormal(sigma=0.2),
            THETA,
            F_TRUE * 1.1,
            stats.lognorm(s=0.2, scale=F_TRUE).logpdf(F_TRUE * 1.1),
        ),
        (
            fk.LogNormal(sigma=0.2, base="10"),
            THETA,
            F_TRUE * 1.1,
            # log10 y ~ N(log10 f, σ²): density of y is that of log10 y times 1/(y ln 10).
            stats.norm(np.log10(F_TRUE), 0.2).logpdf(np.log10(F_TRUE * 1.1))
            - np.log(F_TRUE * 1.1 * np.log(10)),
        ),
        (
            fk.Poisson(),
            THETA,
            np.round(F_TRUE) + 1,
            stats.poisson(F_TRUE).logpmf(np.round(F_TRUE) + 1),
        ),
        (
            fk.NegativeBinomial(r=3.0),
            THETA,
            np.round(F_TRUE) + 2,
            stats.nbinom(3.0, 3.0 / (3.0 + F_TRUE)).logpmf(np.round(F_TRUE) + 2),
        ),
        (
            fk.StudentT(sigma=0.5, df=4.0),
            THETA,
            F_TRUE + 0.7,
            stats.t(4.0, F_TRUE, 0.5).logpdf(F_TRUE + 0.7),
        ),
        (fk.Laplace(b=0.5), THETA, F_TRUE - 0.4, stats.laplace(F_TRUE, 0.5).logpdf(F_TRUE - 0.4)),
    ],
    ids=["gaussian", "lognormal", "lognormal10", "poisson", "negbinom", "student", "laplace"],
)
def test_loglike_matches_scipy(noise, theta, y, expected):
    data = fk.Data(T, y)
    np.testing.assert_allclose(
        fk.loglike(DECAY, theta, data, noise=noise), expected.sum(), rtol=1e-12
    )


def test_custom_density_matches_its_closed_form():
    def logpdf(y, f, p):
        return stats_norm_logpdf(y, f, p["s"])

    def stats_norm_logpdf(y, f, s):
        return -0.5 * jnp.log(2 * jnp.pi * s**2) - (y - f) ** 2 / (2 * s**2)

    def sample(key, f, p):
        import jax

        return f + p["s"] * jax.random.normal(key, f.shape)

    custom = fk.Custom(logpdf, sample, params=["s"])
    theta = {**THETA, "s": 0.5}
    data = fk.Data(T, F_TRUE + 0.2)
    np.testing.assert_allclose(
        fk.loglike(DECAY, theta, data, noise=custom),
        fk.loglike(DECAY, theta, data, noise=fk.Gaussian(sigma="s")),
        rtol=1e-12,
    )
    with pytest.raises(FimkitError, match="no closed-form"):
        fk.fisher_information(DECAY, theta, T, noise=custom)
    exact = fk.fisher_information(DECAY, theta, T, noise=fk.Gaussian(sigma="s"))
    mc = fk.fisher_information(
        DECAY, theta, T, noise=custom, method="score-covariance", n_samples=4000, key=3
    )
    assert np.all(
        np.abs(mc.matrix - exact.matrix)
        <= 4 * mc.mc_standard_error + 1e-9 * np.abs(exact.matrix).max()
    )


@pytest.mark.parametrize(
    "model, theta, noise",
    [
        (DECAY, THETA, fk.Gaussian(sigma="s")),
        (LOGLINK, {"a": 1.0, "b": 0.2}, fk.Poisson()),
        (DECAY, THETA, fk.LogNormal(sigma=0.3)),
        (DECAY, THETA, fk.Proportional(b="b")),
        (DECAY, THETA, fk.StudentT(sigma=0.4, df=5.0)),
    ],
    ids=["gaussian-sigma", "poisson-loglink", "lognormal", "proportional", "student"],
)
@pytest.mark.parametrize("method", ["score-covariance", "neg-hessian"])
def test_monte_carlo_forms_agree_with_closed_form_within_their_error(model, theta, noise, method):
    theta = dict(theta)
    theta.update({n: {"s": 0.5, "b": 0.1}[n] for n in noise.param_names})
    exact = fk.fisher_information(model, theta, T, noise=noise)
    mc = fk.fisher_information(model, theta, T, noise=noise, method=method, n_samples=3000, key=7)
    # Deterministic entries have a zero Monte Carlo error: allow rounding there.
    slack = 4 * mc.mc_standard_error + 1e-9 * np.abs(exact.matrix).max()
    assert np.all(np.abs(mc.matrix - exact.matrix) <= slack), (
        mc.matrix,
        exact.matrix,
        mc.mc_standard_error,
    )


def test_poisson_closed_form_is_s_t_diag_inverse_mean_s():
    theta = {"a": 1.0, "b": 0.2}
    F = fk.fisher_information(LOGLINK, theta, T, noise=fk.Poisson())
    mu = np.exp(1.0 + 0.2 * T)
    X = np.stack([np.ones_like(T), T], axis=1)  # log link: ∂μ/∂(a, b) = μ·(1, t)
    np.testing.assert_allclose(F.matrix, X.T @ (mu[:, None] * X), rtol=1e-12)


def test_score_has_mean_zero_by_simulation():
    noise = fk.Gaussian(sigma="s")
    theta = {**THETA, "s": 0.5}
    scores = np.array(
        [
            fk.score(
                DECAY, theta, fk.simulate_data(DECAY, theta, T, noise=noise, key=k), noise=noise
            )
            for k in range(300)
        ]
    )
    F = fk.fisher_information(DECAY, theta, T, noise=noise)
    se = np.sqrt(np.diag(F.matrix) / len(scores))
    assert np.all(np.abs(scores.mean(axis=0)) < 4 * se)
    np.testing.assert_allclose(
        np.cov(scores, rowvar=False), F.matrix, rtol=0.25, atol=0.1 * np.abs(F.matrix).max()
    )


def test_observed_information_is_minus_finite_difference_of_score():
    noise = fk.Proportional(b="b")
    theta = np.array([10.0, 0.3, 0.1])
    data = fk.simulate_data(DECAY, theta, T, noise=noise, key=1)
    J = fk.observed_information(DECAY, theta, data, noise=noise).matrix
    fd = np.empty((3, 3))
    for j in range(3):
        h = 1e-6 * theta[j]
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        fd[:, j] = (
            fk.score(DECAY, up, data, noise=noise) - fk.score(DECAY, down, data, noise=noise)
        ) / (2 * h)
    np.testing.assert_allclose(J, -fd, rtol=1e-5, atol=1e-6 * np.abs(J).max())
    # On the log scale at a non-optimal point the chain rule includes the score term.
    Jlog = fk.observed_information(DECAY, theta, data, noise=noise, scale="log").matrix
    g = fk.score(DECAY, theta, data, noise=noise)
    np.testing.assert_allclose(Jlog, J * np.outer(theta, theta) - np.diag(theta * g), rtol=1e-10)


def test_estimating_a_nuisance_parameter_never_narrows_intervals():
    # Proportional error with b estimated: the variance depends on the mean parameters, so the
    # information about b is correlated with theirs.
    theta = {**THETA, "b": 0.1}
    F = fk.fisher_information(DECAY, theta, T, noise=fk.Proportional(b="b"), scale="log")
    known = F.select(["A", "k"])
    nuisance = F.marginal(["A", "k"])
    se_known = np.sqrt(np.diag(known.cov()))
    se_nuisance = np.sqrt(np.diag(nuisance.cov()))
    # The marginal bound is the block of the full inverse.
    np.testing.assert_allclose(se_nuisance, np.sqrt(np.diag(F.cov()))[:2], rtol=1e-10)
    assert np.all(se_nuisance >= se_known * (1 - 1e-12))
    assert np.any(se_nuisance > se_known * 1.001)


def test_fit_recovers_closed_form_estimates():
    rng = np.random.default_rng(0)
    y = F_TRUE + 0.2 * rng.normal(size=T.size)
    data = fk.Data(T, y)
    res = fk.fit(DECAY, data, noise=fk.Gaussian(sigma="s"), theta0={"A": 5.0, "k": 1.0, "s": 1.0})
    assert res.success
    f_hat = res.params["A"] * np.exp(-res.params["k"] * T)
    # With σ estimated, its MLE is sqrt(RSS / n) at the least-squares fit.
    np.testing.assert_allclose(res.params["s"], np.sqrt(np.mean((y - f_hat) ** 2)), rtol=1e-6)
    ls = fk.fit(DECAY, data, noise=fk.Gaussian(sigma=0.2), theta0={"A": 5.0, "k": 1.0})
    np.testing.assert_allclose(
        [ls.params["A"], ls.params["k"]], [res.params["A"], res.params["k"]], rtol=1e-6
    )
    # The score vanishes at the optimum.
    g = fk.score(DECAY, ls.theta, data, noise=fk.Gaussian(sigma=0.2))
    np.testing.assert_allclose(g, 0.0, atol=1e-6)
    assert "Maximum-likelihood" in str(ls.summary())


def test_multistart_within_bounds_finds_the_optimum():
    data = fk.Data(T, F_TRUE)
    res = fk.fit(
        DECAY,
        data,
        noise=fk.Gaussian(sigma=0.1),
        theta0={"A": 1.0, "k": 3.0},
        bounds={"A": (0.1, 100.0), "k": (0.01, 5.0)},
        multistart=4,
        key=1,
    )
    assert len(res.starts) == 5
    np.testing.assert_allclose(res.theta, [10.0, 0.3], rtol=1e-6)


def test_a_fit_that_does_not_converge_says_so():
    data = fk.Data(T, F_TRUE + 0.1)
    with pytest.warns(fk.ConvergenceWarning):
        res = fk.fit(
            DECAY,
            data,
            noise=fk.Gaussian(sigma="s"),
            theta0={"A": 1.0, "k": 3.0, "s": 5.0},
            max_iter=1,
        )
    assert not res.success and res.message


def test_flat_likelihood_warns_with_the_direction():
    ex = fk.examples.pk_bolus()
    # Noise-free data: the start is a maximum, flat along the (1, 1, 1) scaling in log space.
    data = fk.Data(ex.design.times, fk.predict(ex.model, ex.theta, ex.design)["C"])
    with pytest.warns(fk.errors.IdentifiabilityWarning, match="CL"):
        fk.fit(ex.model, data, noise=ex.noise, theta0=ex.theta)


def test_sandwich_equals_model_based_when_the_noise_model_is_right():
    design = fk.Design(times=T, n=400)
    noise = fk.Gaussian(sigma=0.5)
    data = fk.simulate_data(DECAY, THETA, design, noise=noise, key=2)
    res = fk.fit(DECAY, data, noise=noise, theta0=THETA)
    np.testing.assert_allclose(res.cov("sandwich"), res.cov("observed"), rtol=0.15, atol=0)


def test_sandwich_corrects_a_wrong_noise_model():
    # A straight line with noise that grows with t, fitted as if the noise were constant.
    line = fk.AnalyticModel(lambda t, p: p["a"] + p["b"] * t, params=["a", "b"], outputs=["y"])
    t = np.linspace(1.0, 10.0, 10)
    sd = 0.02 * t**2
    n = 500
    rng = np.random.default_rng(3)
    y = 1.0 + 0.5 * t + sd * rng.normal(size=(n, t.size))
    data = fk.Data(t, y[:, :, None])
    res = fk.fit(
        line, data, noise=fk.Gaussian(sigma="s"), theta0={"a": 1.0, "b": 0.5, "s": 1.0}, scale="lin"
    )
    # True variance of the least-squares slope with heteroscedastic errors (closed form).
    tc = t - t.mean()
    var_b = np.sum(tc**2 * sd**2) / np.sum(tc**2) ** 2 / n
    model_based = res.cov("observed")[1, 1]
    robust = res.cov("sandwich")[1, 1]
    np.testing.assert_allclose(robust, var_b, rtol=0.2)
    # The homoscedastic model understates the slope's variance; the sandwich corrects it.
    assert model_based < 0.8 * var_b
    assert abs(robust - var_b) < abs(model_based - var_b)


@pytest.mark.slow
def test_simulation_study_variance_and_coverage():
    ex = fk.examples.rooney_biegler()
    study = fk.simulate_study(
        ex.model,
        ex.theta,
        fk.Design(times=[1, 2, 3, 4, 5, 7], n=4),
        noise=fk.Gaussian(sigma=0.5),
        n_rep=400,
        key=0,
    )
    assert study.n_failed == 0
    np.testing.assert_allclose(study.variance_ratio, 1.0, rtol=0.15)
    assert np.all((study.coverage >= 0.92) & (study.coverage <= 0.98))


def test_precision_report_planned_versus_achieved():
    noise = fk.Gaussian(sigma=0.5)
    design = fk.Design(times=T, n=50)
    planned = fk.fisher_information(DECAY, THETA, design, noise=noise, scale="log")
    data = fk.simulate_data(DECAY, THETA, design, noise=noise, key=5)
    res = fk.fit(DECAY, data, noise=noise, theta0=THETA)
    report = fk.precision_report(planned, res)
    np.testing.assert_allclose(report.achieved_se, report.planned_se, rtol=0.2)
    worse = fk.precision_report(
        planned.select(["A", "k"]), fk.fisher_information(DECAY, THETA, T, noise=noise, scale="log")
    )
    assert worse.met == {"A": False, "k": False}
    assert "Planned" in str(report.summary())


def test_bad_data():
    with pytest.raises(DataError, match="1 missing value"):
        fk.Data(T, np.where(T == 2.0, np.nan, F_TRUE))
    data = fk.Data(T, np.where(T == 2.0, np.nan, F_TRUE), drop_missing=True)
    assert data.n_values == T.size - 1
    full = fk.loglike(DECAY, THETA, fk.Data(T, F_TRUE), noise=fk.Gaussian(sigma=1.0))
    dropped = fk.loglike(DECAY, THETA, data, noise=fk.Gaussian(sigma=1.0))
    np.testing.assert_allclose(full - dropped, stats.norm(0, 1).logpdf(0.0), rtol=1e-12)
    with pytest.raises(DataError, match="infinite"):
        fk.Data(T, np.where(T == 2.0, np.inf, F_TRUE))
    with pytest.raises(DataError, match="non-negative integers"):
        fk.loglike(DECAY, THETA, fk.Data(T, -np.ones(T.size)), noise=fk.Poisson())
    with pytest.raises(DataError, match="> 0"):
        fk.loglike(DECAY, THETA, fk.Data(T, np.zeros(T.size)), noise=fk.LogNormal(sigma=0.1))
    with pytest.raises(DataError, match="shape"):
        fk.Data(T, np.ones(T.size + 1))
    with pytest.raises(FimkitError, match="unknown outputs"):
        fk.loglike(DECAY, THETA, fk.Data(T, F_TRUE, outputs=["z"]), noise=fk.Gaussian(sigma=1.0))
    with pytest.raises(FimkitError, match="not twice differentiable"):
        fk.fisher_information(DECAY, THETA, T, noise=fk.Laplace(b=1.0), method="neg-hessian")


def test_data_from_dataframe():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"time": np.repeat(T, 1), "output": "y", "value": F_TRUE})
    data = fk.Data.from_dataframe(df)
    np.testing.assert_allclose(
        fk.loglike(DECAY, THETA, data, noise=fk.Gaussian(sigma=1.0)),
        fk.loglike(DECAY, THETA, fk.Data(T, F_TRUE), noise=fk.Gaussian(sigma=1.0)),
        rtol=1e-12,
    )


def test_data_from_dataframe_matched_to_a_design_with_doses():
    pd = pytest.importorskip("pandas")
    ex = fk.examples.pk_oral_ode()
    design = fk.Design(
        groups=[
            fk.Group(times=[0.5, 1.0, 2.0, 4.0], doses=ex.design.groups[0].doses),
            fk.Group(times=[1.0, 3.0, 6.0], doses=ex.design.groups[0].doses, n=1),
        ]
    )
    pred = fk.predict(ex.model, ex.theta, design)
    out = ex.model.outputs[0]
    rows = []
    for label, gi in (("b", 1), ("a", 0)):  # groups match the design by sorted label
        for t, v in zip(design.groups[gi].times, pred.values[gi][:, 0], strict=True):
            rows.append({"time": t + 1e-14, "output": out, "value": v, "arm": label})
    df = pd.DataFrame(rows[:-1])  # the last time of arm b is not measured
    with pytest.raises(fk.errors.DataError, match="missing"):
        fk.Data.from_dataframe(df, group="arm", design=design)
    data = fk.Data.from_dataframe(df, group="arm", design=design, drop_missing=True)
    assert data.design.groups[0].doses == design.groups[0].doses
    np.testing.assert_allclose(data.design.groups[1].times, design.groups[1].times, rtol=0, atol=0)
    # The data are the predictions themselves: a σ-free residual of zero everywhere measured.
    ll = fk.loglike(ex.model, ex.theta, data, noise=fk.Gaussian(sigma=1.0))
    n = data.n_values
    np.testing.assert_allclose(ll, -0.5 * n * np.log(2 * np.pi), rtol=1e-9)
    # Rows at times the design does not sample, or of outputs it does not measure, are errors.
    bad = pd.concat([df, pd.DataFrame([{"time": 5.0, "output": out, "value": 1.0, "arm": "a"}])])
    with pytest.raises(fk.errors.DataError, match=r"data times \[5.0\].*not in the design"):
        fk.Data.from_dataframe(bad, group="arm", design=design, drop_missing=True)
    with pytest.raises(fk.errors.DataError, match="design has 2"):
        fk.Data.from_dataframe(df, design=design)


def test_geodesic_lm_reaches_the_same_optimum():
    rng = np.random.default_rng(4)
    data = fk.Data(T, F_TRUE + 0.2 * rng.normal(size=T.size))
    nz = fk.Gaussian(sigma=0.2)
    plain = fk.fit(DECAY, data, noise=nz, theta0={"A": 3.0, "k": 1.0})
    geo = fk.fit(DECAY, data, noise=nz, theta0={"A": 3.0, "k": 1.0}, method="geodesic-lm")
    assert geo.success
    np.testing.assert_allclose(geo.theta, plain.theta, rtol=1e-6)
    with pytest.raises(fk.errors.FitError, match="least-squares"):
        fk.fit(
            DECAY,
            data,
            noise=fk.Gaussian(sigma="s"),
            theta0={**THETA, "s": 1.0},
            method="geodesic-lm",
        )
    with pytest.raises(fk.errors.FitError, match="method"):
        fk.fit(DECAY, data, noise=nz, theta0=THETA, method="newton")
