"""Optimal designs: gradient multistart, exchange, multiplicative algorithm, budgets, robust designs.

Truths: ../shared/reference/rooney_biegler.md A2 (t* = 10), brute-force grid searches written with the
closed-form sensitivities of C(t) = D/V·exp(−CL/V·t) in numpy (no fimkit), the theory of D-optimal
designs (a saturated D-optimal design has equal weights; the two-point design of an exponential
decay is {lower bound, lower bound + V/CL}), and central finite differences.
"""

import itertools

import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

import fimkit as fk
from fimkit import oed
from fimkit.errors import DesignError, SingularFIMError
from tests.results import references as ref

matplotlib.use("Agg")

CL, V, DOSE = 2.0, 10.0, 100.0


@pytest.fixture(scope="module")
def pk():
    return fk.examples.pk_bolus()


def pk_det(t):
    """det of the (CL, V) information of samples at times t (last axis), σ = 1, linear scale."""
    t = np.asarray(t, dtype=float)
    c = DOSE / V * np.exp(-CL / V * t)
    s_cl = -t / V * c
    s_v = c * (-1 / V + CL * t / V**2)
    a = np.sum(s_cl * s_cl, axis=-1)
    b = np.sum(s_cl * s_v, axis=-1)
    d = np.sum(s_v * s_v, axis=-1)
    return a * d - b * b


# -- Rooney–Biegler A2: the optimal new measurement ------------------------------------------------------


@pytest.mark.parametrize("criterion", ["D", "A"])
def test_rooney_biegler_a2_optimum_is_t_10(criterion):
    ex = fk.examples.rooney_biegler()
    prior = fk.fisher_information(
        ex.model, ex.theta, list(ref.ROONEY_A2_PRIOR_TIMES), noise=ex.noise
    )
    r = oed.optimize_design(
        ex.model, ex.theta, oed.DesignSpace(n_times=1, bounds=(0, 10)), criterion,
        noise=ex.noise, prior=prior, n_starts=4,
    )  # fmt: skip
    assert r.status == "optimal"
    np.testing.assert_allclose(r.design.times, [10.0], atol=1e-8)
    row = {"D": 0, "A": 1}[criterion]
    v = r.value / np.log(10) if criterion == "D" else np.log10(r.value)
    np.testing.assert_allclose(v, ref.ROONEY_A2[10.0][row], rtol=1e-8)


# -- PK, dose known: the D-optimal two-point design against a brute-force grid search --------------------


def brute_force_two_points(lo, hi):
    grid = np.arange(lo, hi + 1e-9, 0.01)
    T1, T2 = np.meshgrid(grid, grid, indexing="ij")
    dets = pk_det(np.stack([T1, T2], axis=-1))
    i, j = np.unravel_index(np.argmax(np.where(T1 <= T2, dets, -np.inf)), dets.shape)
    fine_1 = np.arange(max(lo, grid[i] - 0.02), min(hi, grid[i] + 0.02) + 1e-12, 1e-4)
    fine_2 = np.arange(max(lo, grid[j] - 0.02), min(hi, grid[j] + 0.02) + 1e-12, 1e-4)
    T1, T2 = np.meshgrid(fine_1, fine_2, indexing="ij")
    dets = pk_det(np.stack([T1, T2], axis=-1))
    i, j = np.unravel_index(np.argmax(dets), dets.shape)
    return np.array([fine_1[i], fine_2[j]]), dets[i, j]


def test_pk_two_point_d_optimal_matches_grid_search(pk):
    truth, det_truth = brute_force_two_points(0.5, 24.0)
    r = oed.optimize_design(
        pk.model, pk.theta, oed.DesignSpace(n_times=2, bounds=(0.5, 24.0)), "D",
        noise=pk.noise, params=["CL", "V"],
    )  # fmt: skip
    assert r.status == "optimal"
    np.testing.assert_allclose(r.design.times, truth, atol=1e-3)
    np.testing.assert_allclose(r.design.times, [0.5, 0.5 + V / CL], atol=1e-6)  # theory
    np.testing.assert_allclose(r.value, np.log(det_truth), rtol=1e-7)
    # The result reports its starting point, its efficiency and the standard errors.
    F1, F0 = r.fim.matrix, r.initial_fim.matrix
    np.testing.assert_allclose(
        r.efficiency(), (np.linalg.det(F1) / np.linalg.det(F0)) ** 0.5, rtol=1e-10
    )
    se = r.standard_errors()
    np.testing.assert_allclose(
        [se["optimal"]["CL"], se["optimal"]["V"]], np.sqrt(np.diag(np.linalg.inv(F1))), rtol=1e-10
    )
    assert len(r.history) >= 2 and all(h.end_utility >= h.start_utility for h in r.history)
    other = fk.Design(times=[1.0, 8.0])
    np.testing.assert_allclose(
        r.efficiency(other), (det_truth / pk_det([1.0, 8.0])) ** 0.5, rtol=1e-7
    )
    text = str(r)
    assert "Design criterion D" in text and "SE optimal" in text
    fig = r.plot()
    assert len(fig.axes) == 1


def test_min_spacing_and_windows_are_respected(pk):
    r = oed.optimize_design(
        pk.model, pk.theta, oed.DesignSpace(n_times=4, bounds=(0.5, 24.0), min_spacing=1.0),
        noise=pk.noise, params=["CL", "V"], scale="log", n_starts=3,
    )  # fmt: skip
    t = r.design.times
    assert np.all(np.diff(t) >= 1.0 - 1e-7) and t[0] >= 0.5 - 1e-9 and t[-1] <= 24.0 + 1e-9
    w = oed.DesignSpace(windows=[(0.5, 1.0), (2.0, 3.0)], fixed_times=[12.0])
    r = oed.optimize_design(pk.model, pk.theta, w, noise=pk.noise, params=["CL", "V"], n_starts=2)
    # The fixed time stays; each free time ends in its window. With a sample at 12 already, the
    # determinant in the second window grows towards its end, the first sample is at the lower bound.
    np.testing.assert_allclose(r.design.times, [0.5, 3.0, 12.0], atol=1e-7)
    truth = [pk_det([a, b, 12.0]) for a in np.linspace(0.5, 1, 51) for b in np.linspace(2, 3, 101)]
    np.testing.assert_allclose(np.exp(r.value), max(truth), rtol=1e-8)


# -- exact gradients against finite differences ----------------------------------------------------------


def test_design_gradient_matches_finite_differences_ode():
    # The ODE model with its dose as a bolus of the design: gradients with respect to the sampling
    # times (through the solve's save times) and to the dose amount (through the state's jump).
    ex = fk.examples.pk_bolus_ode()
    times = np.array([0.7, 9.0])
    kw = {"noise": ex.noise, "params": ["CL", "V"], "scale": "log"}

    def value(t, dose, crit):
        d = fk.Design(times=t, doses=[fk.Bolus(0.0, dose, "A")])
        return oed.design_gradient(ex.model, ex.theta, d, crit, **kw).value

    for crit in ["D", "A", "E"]:
        d = fk.Design(times=times, doses=[fk.Bolus(0.0, 80.0, "A")])
        g = oed.design_gradient(ex.model, ex.theta, d, crit, **kw)
        h = 1e-5
        fd = [
            (value(times + h * e, 80.0, crit) - value(times - h * e, 80.0, crit)) / (2 * h)
            for e in np.eye(2)
        ]
        np.testing.assert_allclose(g.times[0], fd, rtol=1e-6, atol=1e-9)
        fd_dose = (value(times, 80.0 + 1e-3, crit) - value(times, 80.0 - 1e-3, crit)) / 2e-3
        np.testing.assert_allclose(g.doses[0][0], fd_dose, rtol=1e-6)


def test_design_gradient_with_proportional_noise_and_robust_criterion():
    ex = fk.examples.pk_oral()
    noise = fk.Combined(a=0.05, b=0.1, form="sd")
    samples = oed.lognormal_samples(ex.theta, 0.2, 5, seed=1)
    times = np.array([0.4, 1.5, 5.0, 11.0])
    for crit in [
        "D",
        oed.ExpectedLogDet(samples),
        oed.ExpectedDet(samples),
        oed.Expected("A", samples),
    ]:
        g = oed.design_gradient(ex.model, ex.theta, times, crit, noise=noise, scale="log")
        h = 1e-5
        fd = [
            (
                oed.design_gradient(
                    ex.model, ex.theta, times + h * e, crit, noise=noise, scale="log"
                ).value
                - oed.design_gradient(
                    ex.model, ex.theta, times - h * e, crit, noise=noise, scale="log"
                ).value
            )
            / (2 * h)
            for e in np.eye(4)
        ]
        np.testing.assert_allclose(g.times[0], fd, rtol=1e-6, atol=1e-9)


def test_design_gradient_of_singular_design_raises(pk):
    with pytest.raises(SingularFIMError, match="singular"):
        oed.design_gradient(pk.model, pk.theta, [1.0, 2.0, 4.0], "D", noise=pk.noise)


# -- exchange algorithm on candidate grids ---------------------------------------------------------------


def test_exchange_finds_the_best_subset_of_a_grid(pk):
    grid = np.array([0.25, 0.5, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 12])
    best = max(itertools.combinations(grid, 3), key=lambda c: pk_det(c))
    r = oed.optimize_design(
        pk.model, pk.theta, oed.DesignSpace(n_times=3, candidates=grid), noise=pk.noise,
        params=["CL", "V"], n_starts=5,
    )  # fmt: skip
    assert r.status == "optimal" and "exchange" in r.method
    np.testing.assert_allclose(r.design.times, best, rtol=0, atol=0)
    np.testing.assert_allclose(np.exp(r.value), pk_det(best), rtol=1e-10)
    # Spacing on a grid, and replicates.
    r = oed.optimize_design(
        pk.model, pk.theta, oed.DesignSpace(n_times=3, candidates=grid, min_spacing=2.5),
        noise=pk.noise, params=["CL", "V"], n_starts=5,
    )  # fmt: skip
    ok = [c for c in itertools.combinations(grid, 3) if np.all(np.diff(c) >= 2.5)]
    np.testing.assert_allclose(r.design.times, max(ok, key=lambda c: pk_det(c)), atol=0)
    r = oed.optimize_design(
        pk.model, pk.theta, oed.DesignSpace(n_times=4, candidates=grid, replicates=True),
        noise=pk.noise, params=["CL", "V"], n_starts=5,
    )  # fmt: skip
    reps = itertools.combinations_with_replacement(grid, 4)
    np.testing.assert_allclose(r.design.times, max(reps, key=lambda c: pk_det(c)), atol=0)


# -- approximate designs: multiplicative algorithm and the equivalence theorem ---------------------------


def test_equivalence_theorem_certificate(pk):
    grid = np.arange(0.5, 24.0 + 1e-9, 0.25)
    space = oed.DesignSpace(n_times=1, candidates=grid)
    kw = {"noise": pk.noise, "params": ["CL", "V"]}
    w = oed.optimal_weights(pk.model, pk.theta, space, "D", **kw)
    assert w.converged and w.certificate.holds
    cert = w.certificate
    assert cert.bound == 2.0 and cert.max_sensitivity <= 2.0 * (1 + 1e-3)
    # Theory: weight 1/2 at the lower bound and at lower bound + V/CL.
    sup = {t: wt for _, t, wt in w.support(threshold=1e-3)}
    assert sorted(sup) == [0.5, 5.5]
    np.testing.assert_allclose(list(sup.values()), [0.5, 0.5], atol=1e-3)
    # The sensitivity function written out: d(t) = s(t)ᵀ M⁻¹ s(t), M from the weights.
    c = DOSE / V * np.exp(-CL / V * grid)
    S = np.stack([-grid / V * c, c * (-1 / V + CL * grid / V**2)], axis=1)
    M = (S * w.weights[:, None]).T @ S
    d = np.einsum("ij,jk,ik->i", S, np.linalg.inv(M), S)
    np.testing.assert_allclose(cert.sensitivity, d, rtol=1e-8)
    # A deliberately suboptimal design: equal weights at 1 and 2 h fails, by a wide margin.
    bad = np.where(np.isin(grid, [1.0, 2.0]), 1.0, 0.0)
    cb = oed.equivalence_check(pk.model, pk.theta, space, bad, "D", **kw)
    assert not cb.holds and cb.max_sensitivity > 4.0
    assert 0 < cb.efficiency_bound < 1
    # Its true D-efficiency is above the certified lower bound p / max d.
    eff = np.sqrt(pk_det([1.0, 2.0]) / pk_det([0.5, 5.5]))
    assert cb.efficiency_bound <= eff <= 1
    exact = w.to_design(4)
    np.testing.assert_allclose(exact.times, [0.5, 0.5, 5.5, 5.5])
    assert "holds" in str(w)
    assert cb.plot() is not None


# -- budgets, counts of samples, doses, outputs ----------------------------------------------------------


def test_budget_splits_subjects_equally_for_a_saturated_d_optimal_design(pk):
    # Two groups, each sampled once at one fixed time: D-optimal weights of a saturated design are
    # equal (theory), so a budget of 10 subjects gives 5 + 5.
    space = oed.DesignSpace(
        groups=[
            oed.GroupSpace(n_times=0, fixed_times=[0.5]),
            oed.GroupSpace(n_times=0, fixed_times=[5.5]),
        ],
        budget=10,
    )
    r = oed.optimize_design(
        pk.model, pk.theta, space, noise=pk.noise, params=["CL", "V"], n_starts=2
    )
    assert [g.n for g in r.design.groups] == [5, 5]
    np.testing.assert_allclose(r.value, np.log(25 * pk_det([0.5, 5.5])), rtol=1e-10)


def test_samples_per_subject_under_a_sample_budget(pk):
    # 12 samples in all; 2 or 4 samples per subject can split them equally between 0.5 and 5.5 h,
    # 3 cannot. The optimum is the two-point design with 6 samples at each time.
    space = oed.DesignSpace(
        n_times=(2, 3, 4), bounds=(0.5, 24.0), budget=12, cost_per_subject=0.0, cost_per_sample=1.0
    )
    r = oed.optimize_design(
        pk.model, pk.theta, space, noise=pk.noise, params=["CL", "V"], n_starts=3
    )
    g = r.design.groups[0]
    assert g.times.size in (2, 4) and g.n * g.times.size == 12
    np.testing.assert_allclose(r.value, np.log(36 * pk_det([0.5, 5.5])), rtol=1e-6)


def test_dose_bounds_and_levels():
    ex = fk.examples.pk_bolus_ode()
    # The structure (two times and a bolus at 0, log scale) is that of the finite-difference test
    # above: one compiled model program serves both. One start each: no screening program.
    kw = {"noise": ex.noise, "params": ["CL", "V"], "scale": "log", "n_starts": 1}
    # Additive error: a larger dose gives proportionally larger sensitivities, so the upper bound.
    space = oed.DesignSpace(
        n_times=2, bounds=(0.5, 24.0), doses=[fk.Bolus(0.0, 50.0, "A")], dose_bounds=[(10.0, 200.0)]
    )
    r = oed.optimize_design(ex.model, ex.theta, space, **kw)
    assert r.design.groups[0].doses[0].amount == pytest.approx(200.0, rel=1e-9)
    np.testing.assert_allclose(r.design.times, [0.5, 5.5], atol=1e-4)
    space = oed.DesignSpace(
        n_times=2, bounds=(0.5, 24.0), doses=[fk.Bolus(0.0, 50.0, "A")], dose_levels=[(25.0, 75.0)]
    )
    r = oed.optimize_design(ex.model, ex.theta, space, **kw)
    assert r.design.groups[0].doses[0].amount == 75.0


def test_output_options_pick_the_more_informative_output():
    # Plasma concentration and amount excreted in urine, in closed form (dose 100 into A).
    def outputs(t, p):
        k = p["CL"] / p["V"]
        return jnp.stack([100.0 / p["V"] * jnp.exp(-k * t), 100.0 * (1 - jnp.exp(-k * t))])

    m = fk.AnalyticModel(outputs, params=["CL", "V"], outputs=["C", "Ae"])
    theta = {"CL": 2.0, "V": 10.0}
    noise = fk.Gaussian(sigma={"C": 1.0, "Ae": 2.0})
    space = oed.DesignSpace(n_times=2, bounds=(0.5, 24.0), output_options=[["Ae"], ["C"]])
    r = oed.optimize_design(m, theta, space, noise=noise, n_starts=2)
    assert r.design.groups[0].outputs == ("C",)
    t = r.design.times
    cmp = oed.evaluate_design(
        m, theta, {"C": fk.Design(times=t, outputs=["C"]), "Ae": fk.Design(times=t, outputs=["Ae"])},
        "D", noise=noise,
    )  # fmt: skip
    # Urine alone informs CL/V only: scaling CL and V together leaves it unchanged.
    assert cmp.feasible == (True, False)
    null = cmp.null_directions[1][:, 0]
    np.testing.assert_allclose(null, np.array([2.0, 10.0]) / np.hypot(2.0, 10.0), rtol=1e-6)
    np.testing.assert_allclose(r.value, cmp.values[0, 0], rtol=1e-12)
    # The plasma concentration is the pk_bolus model with D known: the two-point design again.
    np.testing.assert_allclose(t, [0.5, 5.5], atol=1e-5)


# -- infeasible spaces -----------------------------------------------------------------------------------


def test_structurally_singular_space_is_reported_with_its_null_direction(pk):
    r = oed.optimize_design(
        pk.model, pk.theta, oed.DesignSpace(n_times=3, bounds=(0.5, 24)), noise=pk.noise,
        scale="log", n_starts=2,
    )  # fmt: skip
    assert r.status == "infeasible" and not r.feasible and np.isnan(r.value)
    np.testing.assert_allclose(r.null_directions[:, 0], np.ones(3) / np.sqrt(3), rtol=1e-6)
    assert "0.577·CL + 0.577·V + 0.577·D" in r.message
    assert "not identifiable" in str(r)


def test_initial_design_must_fit_the_space(pk):
    space = oed.DesignSpace(n_times=2, bounds=(0.5, 24), fixed_times=[1.0])
    with pytest.raises(DesignError, match="fixed time 1"):
        oed.optimize_design(
            pk.model, pk.theta, space, noise=pk.noise, params=["CL", "V"], initial=[2.0, 3.0]
        )
    with pytest.raises(DesignError, match="3 free time"):
        oed.optimize_design(
            pk.model,
            pk.theta,
            space,
            noise=pk.noise,
            params=["CL", "V"],
            initial=[1.0, 3.0, 4.0, 5.0],
        )
    r = oed.optimize_design(
        pk.model,
        pk.theta,
        space,
        noise=pk.noise,
        params=["CL", "V"],
        initial=[1.0, 3.0, 4.0],
        n_starts=1,
    )
    np.testing.assert_allclose(r.initial_design.times, [1.0, 3.0, 4.0])


# -- robust design ---------------------------------------------------------------------------------------


def test_robust_design_is_better_on_average_than_the_local_one(pk):
    samples = oed.lognormal_samples({"CL": 2.0, "V": 10.0}, 0.5, 30, seed=2)
    space = oed.DesignSpace(n_times=2, bounds=(0.5, 24.0))
    kw = {"noise": pk.noise, "params": ["CL", "V"], "scale": "log", "n_starts": 3}
    local = oed.optimize_design(pk.model, pk.theta, space, "D", **kw)
    robust = oed.optimize_design(pk.model, pk.theta, space, oed.ExpectedLogDet(samples), **kw)
    assert robust.status == "optimal"

    # Evaluated independently: each sample's information from fisher_information.
    def mean_logdet(times):
        out = []
        for cl, v in zip(samples["CL"], samples["V"], strict=True):
            F = fk.fisher_information(
                pk.model, {"CL": cl, "V": v, "D": 100.0}, times, noise=pk.noise, scale="log"
            )
            out.append(np.linalg.slogdet(F.select(["CL", "V"]).matrix)[1])
        return np.mean(out)

    np.testing.assert_allclose(robust.value, mean_logdet(robust.design.times), rtol=1e-10)
    assert mean_logdet(robust.design.times) >= mean_logdet(local.design.times)
    assert robust.design.times[1] != pytest.approx(local.design.times[1], abs=1e-3)
