"""Design criteria, robust criteria, design spaces and the comparison of designs.

Truths: ../shared/reference/rooney_biegler.md A2 (copied to tests/results/references.py), numpy
formulas for every criterion on matrices built independently, and the Fisher informations of
`fisher_information` added by hand.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import fimkit as fk
from fimkit import oed
from fimkit.errors import DesignError, FimkitError, ParameterError
from tests.results import references as ref


@pytest.fixture(scope="module")
def rb():
    ex = fk.examples.rooney_biegler()
    prior = fk.fisher_information(
        ex.model, ex.theta, list(ref.ROONEY_A2_PRIOR_TIMES), noise=ex.noise
    )
    return ex, prior


@pytest.fixture(scope="module")
def pk():
    return fk.examples.pk_bolus()


# -- Rooney–Biegler A2: every criterion of the reference table -------------------------------------------


def test_rooney_biegler_a2_every_criterion(rb):
    ex, prior = rb
    designs = {t: [t] for t in ref.ROONEY_A2}
    cmp = oed.evaluate_design(
        ex.model, ex.theta, designs, ["D", "A", "trace", "E", "ME"], noise=ex.noise, prior=prior
    )
    for i, t in enumerate(ref.ROONEY_A2):
        d, a, tr, e, me = cmp.values[i]
        got = [d / np.log(10), np.log10(a), np.log10(tr), np.log10(e), np.log10(me)]
        np.testing.assert_allclose(got, ref.ROONEY_A2[t], rtol=1e-8)
    assert all(cmp.feasible)


def test_trace_is_not_a_optimality(rb):
    # The reference table ranks t = 5 best by the trace of F, t = 10 best by tr F⁻¹ (A).
    ex, prior = rb
    cmp = oed.evaluate_design(
        ex.model,
        ex.theta,
        {t: [t] for t in ref.ROONEY_A2},
        ["A", "trace"],
        noise=ex.noise,
        prior=prior,
    )
    assert cmp.labels[int(np.argmin(cmp.values[:, 0]))] == "10.0"
    assert cmp.labels[int(np.argmax(cmp.values[:, 1]))] == "5.0"
    assert oed.InformationTrace().name == "trace" and oed.AOptimal().name == "A"


# -- each criterion against its formula on independent matrices ----------------------------------------


def _spd(p, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((p + 3, p))
    return X.T @ X + 0.1 * np.eye(p)


@pytest.mark.parametrize("seed", [0, 1])
def test_criteria_match_numpy_formulas(seed):
    M = _spd(4, seed)
    names = ["a", "b", "c", "d"]
    w = np.linalg.eigvalsh(M)
    Minv = np.linalg.inv(M)
    truth = {
        "D": np.linalg.slogdet(M)[1],
        "A": np.trace(Minv),
        "trace": np.trace(M),
        "E": w[0],
        "ME": w[-1] / w[0],
    }
    for name, v in truth.items():
        np.testing.assert_allclose(oed.criterion_value(name, M, names), v, rtol=1e-12)
    # Ds: the information about (a, c) with (b, d) nuisance is the inverse of that block of M⁻¹.
    sub = Minv[np.ix_([0, 2], [0, 2])]
    np.testing.assert_allclose(
        oed.criterion_value(oed.DsOptimal(["a", "c"]), M, names),
        -np.linalg.slogdet(sub)[1],
        rtol=1e-12,
    )
    # c: the delta-method variance of g = a·b / c with its gradient written out by hand.
    th = np.array([2.0, 3.0, 4.0, 5.0])
    grad = np.array([th[1] / th[2], th[0] / th[2], -th[0] * th[1] / th[2] ** 2, 0.0])
    c = oed.COptimal(lambda p: p["a"] * p["b"] / p["c"], label="ab/c")
    np.testing.assert_allclose(
        oed.criterion_value(c, M, names, theta=th), grad @ Minv @ grad, rtol=1e-12
    )
    # On the log scale the gradient is with respect to log θ: θ ⊙ ∇g.
    gl = grad * th
    np.testing.assert_allclose(
        oed.criterion_value(c, M, names, theta=th, scale="log"), gl @ Minv @ gl, rtol=1e-12
    )


def test_efficiency_formulas():
    M0, M1 = _spd(3, 2), _spd(3, 3)
    names, ctx = (
        ["a", "b", "c"],
        oed.criteria.Context(("a", "b", "c"), ("a", "b", "c"), (0, 1, 2), "lin"),
    )
    D, A = oed.DOptimal(), oed.AOptimal()
    v = {
        c: [oed.criterion_value(c, M, names) for M in (M1, M0)]
        for c in ("D", "A", "E", "ME", "trace")
    }
    p = 3
    np.testing.assert_allclose(
        D.efficiency(*v["D"], ctx), (np.linalg.det(M1) / np.linalg.det(M0)) ** (1 / p), rtol=1e-12
    )
    np.testing.assert_allclose(
        A.efficiency(*v["A"], ctx),
        np.trace(np.linalg.inv(M0)) / np.trace(np.linalg.inv(M1)),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        oed.EOptimal().efficiency(*v["E"], ctx),
        np.linalg.eigvalsh(M1)[0] / np.linalg.eigvalsh(M0)[0],
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        oed.ModifiedEOptimal().efficiency(*v["ME"], ctx),
        np.linalg.cond(M0) / np.linalg.cond(M1),
        rtol=1e-10,
    )


# -- prior information ----------------------------------------------------------------------------------


def test_prior_is_added_to_every_criterion(pk):
    prior = fk.fisher_information(
        pk.model, pk.theta, [1.0, 3.0], noise=pk.noise, scale="log"
    ).select(["CL", "V"])
    new = fk.fisher_information(pk.model, pk.theta, [0.5, 6.0], noise=pk.noise, scale="log").select(
        ["CL", "V"]
    )
    total = prior.matrix + new.matrix
    cmp = oed.evaluate_design(
        pk.model, pk.theta, [[0.5, 6.0]], ["D", "A", "E"], noise=pk.noise, scale="log",
        params=["CL", "V"], prior=prior,
    )  # fmt: skip
    w = np.linalg.eigvalsh(total)
    np.testing.assert_allclose(
        cmp.values[0],
        [np.linalg.slogdet(total)[1], np.trace(np.linalg.inv(total)), w[0]],
        rtol=1e-10,
    )
    np.testing.assert_allclose(cmp.fims[0].matrix, total, rtol=1e-12)


def test_prior_on_the_other_scale_is_converted(pk):
    prior_lin = fk.fisher_information(pk.model, pk.theta, [1.0, 3.0], noise=pk.noise).select(
        ["CL", "V"]
    )
    a = oed.evaluate_design(
        pk.model,
        pk.theta,
        [[2.0]],
        "D",
        noise=pk.noise,
        scale="log",
        params=["CL", "V"],
        prior=prior_lin,
    )
    b = oed.evaluate_design(
        pk.model, pk.theta, [[2.0]], "D", noise=pk.noise, scale="log", params=["CL", "V"],
        prior=prior_lin.to_scale("log"),
    )  # fmt: skip
    np.testing.assert_allclose(a.values, b.values, rtol=1e-12)


def test_prior_with_wrong_names_is_an_error(pk):
    prior = fk.fisher_information(pk.model, pk.theta, [1.0, 3.0], noise=pk.noise)  # CL, V, D
    with pytest.raises(ParameterError, match="same parameters"):
        oed.evaluate_design(
            pk.model, pk.theta, [[2.0, 5.0]], "D", noise=pk.noise, params=["CL", "V"], prior=prior
        )
    other = fk.FisherInformation(np.eye(2), ["CL", "ka"], [2.0, 1.0])
    with pytest.raises(ParameterError, match="same parameters"):
        oed.optimize_design(
            pk.model, pk.theta, oed.DesignSpace(n_times=2, bounds=(0.5, 24)), noise=pk.noise,
            params=["CL", "V"], prior=other,
        )  # fmt: skip
    moved = fk.FisherInformation(np.eye(2), ["CL", "V"], [3.0, 10.0])
    with pytest.raises(ParameterError, match="other parameter values"):
        oed.evaluate_design(
            pk.model, pk.theta, [[2.0, 5.0]], "D", noise=pk.noise, params=["CL", "V"], prior=moved
        )


# -- robust criteria ------------------------------------------------------------------------------------


def test_robust_criteria_average_over_samples(pk):
    samples = oed.lognormal_samples({"CL": 2.0, "V": 10.0}, 0.3, 6, seed=4)
    times = [0.5, 2.0, 6.0]
    logdets, dets, traces = [], [], []
    for i in range(6):
        th = {"CL": samples["CL"][i], "V": samples["V"][i], "D": 100.0}
        F = fk.fisher_information(pk.model, th, times, noise=pk.noise, scale="log").select(
            ["CL", "V"]
        )
        logdets.append(np.linalg.slogdet(F.matrix)[1])
        dets.append(np.linalg.det(F.matrix))
        traces.append(np.trace(np.linalg.inv(F.matrix)))
    crits = [oed.ExpectedLogDet(samples), oed.ExpectedDet(samples), oed.Expected("A", samples)]
    cmp = oed.evaluate_design(
        pk.model, pk.theta, [times], crits, noise=pk.noise, scale="log", params=["CL", "V"]
    )
    np.testing.assert_allclose(
        cmp.values[0], [np.mean(logdets), np.log(np.mean(dets)), np.mean(traces)], rtol=1e-10
    )
    assert [c.label for c in crits] == ["E[log det]", "log E[det]", "E[A]"]


def test_robust_samples_bad_input(pk):
    with pytest.raises(ParameterError, match="same, non-zero number"):
        oed.ExpectedLogDet({"CL": [1.0, 2.0], "V": [1.0]})
    crit = oed.ExpectedLogDet({"Cl": [1.0, 2.0]})
    with pytest.raises(ParameterError, match="unknown parameters"):
        oed.evaluate_design(
            pk.model, pk.theta, [[1.0, 2.0]], crit, noise=pk.noise, params=["CL", "V"]
        )
    crit = oed.ExpectedLogDet({"CL": [1.0, -2.0]})
    with pytest.raises(ParameterError, match="positive on the log scale"):
        oed.evaluate_design(
            pk.model, pk.theta, [[1.0, 2.0]], crit, noise=pk.noise, params=["CL", "V"], scale="log"
        )


# -- bad criteria, singular informations -----------------------------------------------------------------


def test_unknown_criterion_and_bad_ds_names(pk):
    with pytest.raises(FimkitError, match="'criterion' argument must be one of"):
        oed.evaluate_design(pk.model, pk.theta, [[1.0, 2.0]], "G", noise=pk.noise)
    with pytest.raises(ParameterError, match="DsOptimal"):
        oed.evaluate_design(
            pk.model,
            pk.theta,
            [[1.0, 2.0]],
            oed.DsOptimal(["CL", "ka"]),
            noise=pk.noise,
            params=["CL", "V"],
        )
    with pytest.raises(FimkitError, match="callable"):
        oed.COptimal(3.0)


def test_singular_information_is_an_infeasible_design_not_an_error(pk):
    # (CL, V, D) from concentrations: the joint scaling is undetermined, ∝ (1, 1, 1) in log θ.
    cmp = oed.evaluate_design(
        pk.model, pk.theta, {"six": list(fk.examples.models.PK_TIMES), "known D": [1.0, 4.0]},
        ["D", "A", "trace"], noise=pk.noise, scale="log",
    )  # fmt: skip
    assert cmp.feasible == (False, False)
    assert np.all(np.isnan(cmp.values[:, :2]))
    assert np.all(np.isfinite(cmp.values[:, 2]))  # the trace exists, but does not make it feasible
    null = cmp.null_directions[0][:, 0]
    np.testing.assert_allclose(null, np.ones(3) / np.sqrt(3), rtol=1e-6)
    text = str(cmp)
    assert "infeasible" in text and "0.577·CL + 0.577·V + 0.577·D" in text


# -- design spaces ---------------------------------------------------------------------------------------


def test_design_space_bad_input():
    with pytest.raises(DesignError, match="reversed"):
        oed.DesignSpace(n_times=2, bounds=(24, 0))
    with pytest.raises(DesignError, match="cannot hold n_times=5"):
        oed.DesignSpace(n_times=5, bounds=(0, 1), min_spacing=0.5)
    with pytest.raises(DesignError, match="window 1"):
        oed.DesignSpace(windows=[(0, 0.2), (0.1, 0.4), (0.2, 0.6)], min_spacing=0.5)
    with pytest.raises(DesignError, match="reversed"):
        oed.DesignSpace(windows=[(0, 1), (3, 2)])
    with pytest.raises(DesignError, match="at most 2"):
        oed.DesignSpace(n_times=3, candidates=[0, 1, 2, 3], min_spacing=1.5)
    with pytest.raises(DesignError, match=">= 0"):
        oed.DesignSpace(n_times=2, bounds=(0, 1), min_spacing=-1)
    with pytest.raises(DesignError, match="one of 'bounds', 'windows' and 'candidates'"):
        oed.DesignSpace(n_times=2, bounds=(0, 1), candidates=[0.5, 1.0])
    with pytest.raises(DesignError, match="needs 'bounds'"):
        oed.DesignSpace(n_times=2)
    with pytest.raises(DesignError, match="either 'groups'"):
        oed.DesignSpace(n_times=2, bounds=(0, 1), groups=[oed.GroupSpace(n_times=1, bounds=(0, 1))])
    with pytest.raises(DesignError, match="one entry per dose"):
        oed.DesignSpace(n_times=1, bounds=(0, 1), doses=[fk.Bolus(0, 1.0, "A")], dose_bounds=[])
    with pytest.raises(DesignError, match="parameter"):
        oed.DesignSpace(
            n_times=1, bounds=(0, 1), doses=[fk.Bolus(0, "D", "A")], dose_bounds=[(1, 2)]
        )
    with pytest.raises(DesignError, match="budget"):
        oed.DesignSpace(n_times=2, candidates=[1, 2, 3], budget=10)


def test_design_space_accepts_what_fits():
    s = oed.DesignSpace(n_times=4, bounds=(0, 3), min_spacing=1.0)  # exactly fits
    assert s.groups[0].n_times == (4,)
    w = oed.DesignSpace(windows=[(0, 1), (0.5, 2), (1, 3)], min_spacing=0.5)
    assert w.groups[0].n_times == (3,) and w.groups[0].ordered
    g = oed.DesignSpace(n_times=(4, 2), candidates=[3, 1, 2, 2, 0], replicates=True)
    assert g.groups[0].candidates == (0.0, 1.0, 2.0, 3.0) and g.groups[0].n_times == (2, 4)


def test_criterion_value_of_jax_and_numpy_inputs_agree():
    M = _spd(3, 5)
    a = oed.criterion_value("D", M, ["a", "b", "c"])
    b = float(oed.DOptimal().value(jnp.asarray(M), None, None))
    np.testing.assert_allclose(a, b, rtol=1e-14)
