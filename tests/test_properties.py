"""Property-based checks of the Fisher information against independent truths.

Each property is checked on analytic models (Rooney–Biegler, the closed-form oral PK model) and on
one small ODE model (the oral PK model as an ODE). The truths are closed forms (the information of an
estimated σ, the log-scale Jacobian, Schur complements) and central finite differences of
`fimkit.predict`, from which ``I = Sᵀ diag(1/v) S + ½ Gᵀ diag(1/v²) G`` is assembled by hand.

Compiled programs are cached on the model instance and keyed on the design's structure (number of
times per group, outputs, doses) and on the noise model, so the models below are built once per module
and the strategies vary parameter values and sampling-time values, never the number of times.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fimkit as fk

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SETTINGS_ODE = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

RB = fk.examples.rooney_biegler()  # y = A(1 - exp(-k t)); params A, k
ORAL = fk.examples.pk_oral()  # Bateman function; params ka, CL, V
ODE = fk.examples.pk_oral_ode()  # the same model as an ODE, dose as a bolus into the gut
ODE_DOSES = ODE.design.groups[0].doses


def _two_outputs(t, p):
    return [p["A"] * jnp.exp(-p["k"] * t), p["A"] * p["k"] * t * jnp.exp(-p["k"] * t)]


# Two outputs, for per-output noise parameters.
TWO = fk.AnalyticModel(_two_outputs, params=["A", "k"], outputs=["y1", "y2"], name="two_outputs")

N_RB, N_ORAL = 6, 9  # fixed numbers of sampling times (part of the compiled structure)


# -- strategies --------------------------------------------------------------------------------------


def _times(n: int, lo: float, hi: float):
    return st.lists(
        st.floats(lo, hi, allow_nan=False, allow_infinity=False), min_size=n, max_size=n
    ).map(lambda ts: np.asarray(ts, dtype=float))


def _theta(ranges: dict[str, tuple[float, float]]):
    return st.fixed_dictionaries({k: st.floats(lo, hi) for k, (lo, hi) in ranges.items()})


def _spread_times(grid: tuple[float, ...]):
    """Times that inform every parameter: a fixed grid, each point jittered by up to ±15 %."""
    g = np.asarray(grid)
    return st.lists(st.floats(0.85, 1.15), min_size=g.size, max_size=g.size).map(
        lambda u: g * np.asarray(u)
    )


RB_THETA = _theta({"A": (5.0, 25.0), "k": (0.2, 1.5)})
# ka stays well above k = CL/V (at most 0.375), away from the Bateman function's 0/0 at ka = k.
ORAL_THETA = _theta({"ka": (0.8, 2.5), "CL": (1.0, 3.0), "V": (8.0, 12.0)})
RB_TIMES = _times(N_RB, 0.2, 10.0)
ORAL_TIMES = _times(N_ORAL, 0.1, 24.0)
ORAL_SPREAD = _spread_times((0.25, 0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 24.0))


def _case(which: str):
    """(model, theta strategy, times strategy, doses, sigma) for a model under test."""
    if which == "rooney_biegler":
        return RB.model, RB_THETA, RB_TIMES, (), 0.1
    if which == "pk_oral":
        return ORAL.model, ORAL_THETA, ORAL_TIMES, (), 0.1
    return ODE.model, ORAL_THETA, ORAL_TIMES, ODE_DOSES, 0.1


ANALYTIC = ["rooney_biegler", "pk_oral"]
ALL = [*ANALYTIC, "pk_oral_ode"]


def _settings(which: str):
    return SETTINGS_ODE if which == "pk_oral_ode" else SETTINGS


# -- an independent Fisher information from finite differences ---------------------------------------


def _flat_predict(model, theta: dict, design) -> np.ndarray:
    pred = fk.predict(model, {k: theta[k] for k in model.params}, design)
    return np.concatenate([v.reshape(-1) for v in pred.values])


def fd_fim(
    model, theta: dict, design, variance, *, names=None, log: bool = False, rel: float = 1e-5
):
    """``Sᵀ diag(1/v) S + ½ Gᵀ diag(1/v²) G`` with S = ∂μ/∂θ and G = ∂v/∂θ by central differences.

    `variance(f, p)` is the observation variance written out here, independently of fimkit's noise
    classes; `p` holds every parameter (the model's and the noise's). With `log`, derivatives are
    taken with respect to log θ; `names` orders the rows (default: the model's parameters, then the
    other keys of `theta`). Only for designs with n = 1 in every group.
    """
    if names is None:
        names = [*model.params, *(k for k in theta if k not in model.params)]
    names = list(names)
    x0 = np.array([theta[n] for n in names], dtype=float)

    def mu_var(x):
        p = dict(zip(names, x, strict=True))
        f = _flat_predict(model, p, design)
        return f, variance(f, p)

    f0, v0 = mu_var(x0)
    S = np.zeros((f0.size, len(names)))
    G = np.zeros((f0.size, len(names)))
    for j in range(len(names)):
        up, down = x0.copy(), x0.copy()
        if log:
            h = rel
            up[j], down[j] = x0[j] * np.exp(h), x0[j] * np.exp(-h)
        else:
            h = rel * abs(x0[j])
            up[j], down[j] = x0[j] + h, x0[j] - h
        fu, vu = mu_var(up)
        fd, vd = mu_var(down)
        S[:, j] = (fu - fd) / (2 * h)
        G[:, j] = (vu - vd) / (2 * h)
    return S.T @ (S / v0[:, None]) + 0.5 * G.T @ (G / v0[:, None] ** 2)


def _assert_fim_close(actual, expected, *, rtol):
    """Entrywise comparison with an absolute floor scaled to the matrix (cross terms may be ~0)."""
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


# FD accuracy: analytic models are smooth to rounding; the ODE solution (rtol 1e-10) is smooth only to
# the solver's tolerance, so its differences are taken with a larger step and compared more loosely.
FD = {
    "rooney_biegler": {"rel": 1e-5, "rtol": 1e-6},
    "pk_oral": {"rel": 1e-5, "rtol": 1e-6},
    "pk_oral_ode": {"rel": 1e-4, "rtol": 1e-4},
}


# -- symmetry, positive semi-definiteness, and agreement with finite differences ---------------------


@pytest.mark.parametrize("which", ALL)
def test_fim_is_symmetric_psd_and_matches_finite_differences(which):
    model, thetas, times, doses, sigma = _case(which)

    @_settings(which)
    @given(theta=thetas, t=times)
    def check(theta, t):
        design = fk.Design(times=t, doses=doses or None)
        F = fk.fisher_information(model, theta, design, noise=fk.Gaussian(sigma=sigma))
        m = F.matrix
        assert F.names == model.params
        np.testing.assert_array_equal(m, m.T)
        w = np.linalg.eigvalsh(m)
        assert w[0] >= -1e-12 * w[-1]
        expected = fd_fim(
            model, theta, design, lambda f, p: np.full_like(f, sigma**2), rel=FD[which]["rel"]
        )
        _assert_fim_close(m, expected, rtol=FD[which]["rtol"])

    check()


# -- the log scale -----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ALL)
def test_log_scale_is_diag_theta_congruence(which):
    model, thetas, times, doses, sigma = _case(which)

    @_settings(which)
    @given(theta=thetas, t=times)
    def check(theta, t):
        design = fk.Design(times=t, doses=doses or None)
        noise = fk.Gaussian(sigma=sigma)
        F_lin = fk.fisher_information(model, theta, design, noise=noise, scale="lin")
        F_log = fk.fisher_information(model, theta, design, noise=noise, scale="log")
        assert (F_lin.scale, F_log.scale) == ("lin", "log")
        D = np.diag([theta[n] for n in model.params])
        expected = D @ F_lin.matrix @ D
        _assert_fim_close(F_log.matrix, expected, rtol=1e-12)
        _assert_fim_close(F_lin.to_scale("log").matrix, expected, rtol=1e-12)
        _assert_fim_close(F_log.to_scale("lin").matrix, F_lin.matrix, rtol=1e-10)
        # Independently: finite differences in log θ.
        fd = fd_fim(
            model,
            theta,
            design,
            lambda f, p: np.full_like(f, sigma**2),
            log=True,
            rel=FD[which]["rel"],
        )
        _assert_fim_close(F_log.matrix, fd, rtol=FD[which]["rtol"])

    check()


# -- independent experiments add ---------------------------------------------------------------------


@pytest.mark.parametrize("which", ALL)
def test_independent_experiments_add(which):
    model, thetas, times, doses, sigma = _case(which)

    @_settings(which)
    @given(theta=thetas, t1=times, t2=times)
    def check(theta, t1, t2):
        noise = fk.Gaussian(sigma=sigma)
        g1, g2 = fk.Group(t1, doses=doses), fk.Group(t2, doses=doses)
        F1 = fk.fisher_information(model, theta, fk.Design(groups=[g1]), noise=noise)
        F2 = fk.fisher_information(model, theta, fk.Design(groups=[g2]), noise=noise)
        F12 = fk.fisher_information(model, theta, fk.Design(groups=[g1, g2]), noise=noise)
        _assert_fim_close(F12.matrix, F1.matrix + F2.matrix, rtol=1e-9)
        _assert_fim_close((F1 + F2).matrix, F12.matrix, rtol=1e-9)
        _assert_fim_close(sum([F1, F2]).matrix, F12.matrix, rtol=1e-9)
        # Adding informations on different scales converts the second one.
        mixed = F1 + F2.to_scale("log")
        assert mixed.scale == "lin"
        _assert_fim_close(mixed.matrix, F12.matrix, rtol=1e-9)

    check()


# Replicates. The weight n of a group must multiply its information. A dedicated model instance is
# used so that its compiled programs have only ever seen the group sizes of this test.
RB_REPLICATES = fk.examples.rooney_biegler().model


@SETTINGS
@given(theta=RB_THETA, t=_times(4, 0.2, 10.0))
def test_group_of_n_subjects_is_n_times_one_subject(theta, t):
    noise = fk.Gaussian(sigma=0.1)
    F3 = fk.fisher_information(RB_REPLICATES, theta, fk.Design(times=t, n=3), noise=noise)
    F_111 = fk.fisher_information(
        RB_REPLICATES, theta, fk.Design(groups=[fk.Group(t), fk.Group(t), fk.Group(t)]), noise=noise
    )
    _assert_fim_close(F3.matrix, F_111.matrix, rtol=1e-10)
    S = np.asarray(fk.sensitivities(RB_REPLICATES, theta, t))
    _assert_fim_close(F3.matrix, 3 * S.T @ S / 0.1**2, rtol=1e-10)


def test_group_size_is_not_stale_after_a_design_with_other_n():
    model, theta, t = RB.model, RB.theta, [1.0, 2.5, 4.0, 6.0, 9.0]
    noise = fk.Gaussian(sigma=0.1)
    F1 = fk.fisher_information(model, theta, fk.Design(times=t), noise=noise)
    F3 = fk.fisher_information(model, theta, fk.Design(times=t, n=3), noise=noise)
    _assert_fim_close(F3.matrix, 3 * F1.matrix, rtol=1e-10)


# -- a known additive σ -------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ANALYTIC)
def test_scaling_a_known_sigma_by_c_scales_the_fim_by_one_over_c_squared(which):
    model, thetas, times, _, sigma = _case(which)

    # c takes few values: a known σ is a constant of the compiled program.
    @SETTINGS
    @given(theta=thetas, t=times, c=st.sampled_from([0.25, 3.0]))
    def check(theta, t, c):
        F = fk.fisher_information(model, theta, t, noise=fk.Gaussian(sigma=sigma))
        Fc = fk.fisher_information(model, theta, t, noise=fk.Gaussian(sigma=c * sigma))
        _assert_fim_close(Fc.matrix, F.matrix / c**2, rtol=1e-12)
        # A plain number is additive σ as well.
        Fn = fk.fisher_information(model, theta, t, noise=c * sigma)
        _assert_fim_close(Fn.matrix, Fc.matrix, rtol=1e-14)

    check()


# -- marginal (Schur complement) and select ----------------------------------------------------------


def _marginal_cases():
    return [
        ("pk_oral", ORAL.model, ORAL_THETA, ORAL_SPREAD, (), fk.Gaussian(sigma=0.1)),
        ("pk_oral_sigma", ORAL.model, ORAL_THETA, ORAL_SPREAD, (), fk.Gaussian(sigma="sigma")),
        ("pk_oral_ode", ODE.model, ORAL_THETA, ORAL_SPREAD, ODE_DOSES, fk.Gaussian(sigma=0.1)),
    ]


@pytest.mark.parametrize(
    ("label", "model", "thetas", "times", "doses", "noise"),
    _marginal_cases(),
    ids=[c[0] for c in _marginal_cases()],
)
def test_marginal_is_schur_complement_and_below_select(label, model, thetas, times, doses, noise):
    names = list(model.params) + [n for n in noise.param_names if n not in model.params]

    @(SETTINGS_ODE if label == "pk_oral_ode" else SETTINGS)
    @given(
        theta=thetas,
        sigma=st.floats(0.05, 0.5),
        t=times,
        keep=st.lists(st.sampled_from(names), min_size=1, max_size=len(names) - 1, unique=True),
    )
    def check(theta, sigma, t, keep):
        th = {**theta, "sigma": sigma} if "sigma" in names else theta
        F = fk.fisher_information(model, th, fk.Design(times=t, doses=doses or None), noise=noise)
        idx = [F.names.index(n) for n in keep]
        full_inv = np.linalg.inv(F.matrix)
        M = F.marginal(keep)
        S = F.select(keep)
        assert M.names == S.names == tuple(keep)
        np.testing.assert_allclose(M.theta, [th[n] for n in keep], rtol=0, atol=0)
        # The marginal's inverse is the block of the full inverse.
        block = full_inv[np.ix_(idx, idx)]
        _assert_fim_close(np.linalg.inv(M.matrix), block, rtol=1e-7)
        _assert_fim_close(M.cov(), block, rtol=1e-7)
        # select is the sub-matrix; marginal <= select in the Loewner order.
        np.testing.assert_array_equal(S.matrix, F.matrix[np.ix_(idx, idx)])
        gap = np.linalg.eigvalsh(S.matrix - M.matrix)
        assert gap.min() >= -1e-10 * np.abs(S.matrix).max()
        # Hence nuisance parameters only widen the standard errors.
        se_m, se_s, se_full = M.standard_errors(), S.standard_errors(), F.standard_errors()
        se_s_numpy = np.sqrt(np.diag(np.linalg.inv(F.matrix[np.ix_(idx, idx)])))
        for j, n in enumerate(keep):
            assert se_m[n] >= se_s[n] * (1 - 1e-10)
            np.testing.assert_allclose(se_m[n], se_full[n], rtol=1e-7, atol=0)
            np.testing.assert_allclose(se_m[n], np.sqrt(block[j, j]), rtol=1e-7, atol=0)
            np.testing.assert_allclose(se_s[n], se_s_numpy[j], rtol=1e-9, atol=0)

    check()


# -- an estimated σ ----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ANALYTIC)
def test_estimated_sigma_information_is_closed_form(which):
    model, thetas, times, _, _ = _case(which)

    @SETTINGS
    @given(theta=thetas, sigma=st.floats(0.01, 2.0), t=times)
    def check(theta, sigma, t):
        F = fk.fisher_information(
            model, {**theta, "sigma": sigma}, t, noise=fk.Gaussian(sigma="sigma")
        )
        assert F.names == (*model.params, "sigma")
        n_obs = len(t) * len(model.outputs)
        m = F.matrix
        np.testing.assert_allclose(m[-1, -1], 2 * n_obs / sigma**2, rtol=1e-12, atol=0)
        np.testing.assert_allclose(m[-1, :-1], 0.0, rtol=0, atol=1e-12 * m[-1, -1])
        # The model block is the known-σ information Sᵀ S / σ², S by finite differences.
        expected = fd_fim(model, theta, t, lambda f, p: np.full_like(f, sigma**2))
        _assert_fim_close(m[:-1, :-1], expected, rtol=1e-6)

    check()


@SETTINGS
@given(
    theta=RB_THETA,
    s1=st.floats(0.01, 2.0),
    s2=st.floats(0.01, 2.0),
    t=_times(5, 0.2, 10.0),
    t_only1=_times(3, 0.2, 10.0),
)
def test_per_output_estimated_sigmas_count_their_own_observations(theta, s1, s2, t, t_only1):
    noise = fk.Gaussian(sigma={"y1": "s1", "y2": "s2"})
    design = fk.Design(groups=[fk.Group(t), fk.Group(t_only1, outputs=["y1"])])
    F = fk.fisher_information(TWO, {**theta, "s1": s1, "s2": s2}, design, noise=noise)
    assert F.names == ("A", "k", "s1", "s2")
    n1, n2 = len(t) + len(t_only1), len(t)
    expected_noise_block = np.diag([2 * n1 / s1**2, 2 * n2 / s2**2])
    _assert_fim_close(F.matrix[2:, 2:], expected_noise_block, rtol=1e-12)
    np.testing.assert_allclose(F.matrix[:2, 2:], 0.0, rtol=0, atol=1e-12 * F.matrix[2:, 2:].max())


# -- variances that depend on the parameters ---------------------------------------------------------


def _prop(b):
    return lambda f, p: (p[b] if isinstance(b, str) else b) ** 2 * f**2


def _comb_var(a, b):
    def v(f, p):
        av = p[a] if isinstance(a, str) else a
        bv = p[b] if isinstance(b, str) else b
        return av**2 + bv**2 * f**2

    return v


def _comb_sd(a, b):
    def v(f, p):
        av = p[a] if isinstance(a, str) else a
        bv = p[b] if isinstance(b, str) else b
        return (av + bv * np.abs(f)) ** 2

    return v


NOISE_CASES = {
    "proportional": (fk.Proportional(b=0.15), _prop(0.15), {}),
    "proportional_estimated": (fk.Proportional(b="b"), _prop("b"), {"b": 0.15}),
    "combined_variance": (fk.Combined(a=0.2, b=0.1, form="variance"), _comb_var(0.2, 0.1), {}),
    "combined_sd": (fk.Combined(a=0.2, b=0.1, form="sd"), _comb_sd(0.2, 0.1), {}),
    "combined_variance_estimated": (
        fk.Combined(a="a", b="b", form="variance"),
        _comb_var("a", "b"),
        {"a": 0.2, "b": 0.1},
    ),
    "combined_sd_estimated": (
        fk.Combined(a="a", b="b", form="sd"),
        _comb_sd("a", "b"),
        {"a": 0.2, "b": 0.1},
    ),
}


@pytest.mark.parametrize("noise_case", list(NOISE_CASES))
@pytest.mark.parametrize("which", ANALYTIC)
def test_parameter_dependent_variance_matches_finite_differences(which, noise_case):
    model, thetas, times, _, _ = _case(which)
    noise, variance, extra = NOISE_CASES[noise_case]

    @settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(theta=thetas, t=times, factor=st.floats(0.5, 2.0))
    def check(theta, t, factor):
        th = {**theta, **{k: v * factor for k, v in extra.items()}}
        F = fk.fisher_information(model, th, t, noise=noise)
        assert F.names == (*model.params, *extra)
        expected = fd_fim(model, th, t, variance, names=F.names)
        _assert_fim_close(F.matrix, expected, rtol=1e-6)

    check()


@SETTINGS_ODE
@given(theta=ORAL_THETA, t=ORAL_TIMES)
def test_proportional_noise_on_the_ode_model_matches_finite_differences(theta, t):
    design = fk.Design(times=t, doses=ODE_DOSES)
    F = fk.fisher_information(ODE.model, theta, design, noise=fk.Proportional(b=0.15))
    expected = fd_fim(ODE.model, theta, design, _prop(0.15), rel=FD["pk_oral_ode"]["rel"])
    _assert_fim_close(F.matrix, expected, rtol=FD["pk_oral_ode"]["rtol"])
    # The ODE and the closed form describe the same model: their informations agree too.
    F_closed = fk.fisher_information(ORAL.model, theta, t, noise=fk.Proportional(b=0.15))
    _assert_fim_close(F.matrix, F_closed.matrix, rtol=1e-6)
