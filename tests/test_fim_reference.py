"""The core reproduces the published and independently derived reference numbers."""

import numpy as np
import pytest

import fimkit as fk
from tests.results import references as ref


@pytest.fixture(scope="module")
def pk():
    return fk.examples.pk_bolus()


def test_pk_bolus_log_fim_is_rank_two_with_scaling_null_direction(pk):
    F = fk.fisher_information(pk.model, pk.theta, pk.design, noise=pk.noise, scale="log")
    w = np.linalg.eigvalsh(F.matrix)
    np.testing.assert_allclose(w[1:], ref.PK_BOLUS_LOG_EIGENVALUES, rtol=1e-8)
    assert abs(w[0]) < 1e-10 * w[-1]
    assert F.rank() == 2
    null = F.null_space()
    assert null.shape == (3, 1)
    np.testing.assert_allclose(null[:, 0], np.ones(3) / np.sqrt(3), rtol=1e-7)


def test_pk_bolus_with_dose_known(pk):
    F = fk.fisher_information(pk.model, pk.theta, pk.design, noise=pk.noise, scale="log")
    Fk = F.select(["CL", "V"])
    np.testing.assert_allclose(
        np.linalg.eigvalsh(Fk.matrix), ref.PK_BOLUS_D_KNOWN_EIGENVALUES, rtol=1e-8
    )
    assert Fk.rank() == 2


def test_pk_bolus_ode_with_dose_as_bolus_matches_closed_form(pk):
    ode = fk.examples.pk_bolus_ode()
    F = fk.fisher_information(pk.model, pk.theta, pk.design, noise=pk.noise, scale="log")
    G = fk.fisher_information(ode.model, ode.theta, ode.design, noise=ode.noise, scale="log")
    np.testing.assert_allclose(G.matrix, F.matrix, rtol=1e-6)


@pytest.fixture(scope="module")
def rooney():
    return fk.examples.rooney_biegler()


def test_rooney_biegler_a1(rooney):
    F = fk.fisher_information(rooney.model, rooney.theta, [5.0], noise=rooney.noise, scale="log")
    np.testing.assert_allclose(F.matrix, ref.ROONEY_A1_FIM, rtol=1e-8)


def _criteria(m):
    w = np.linalg.eigvalsh(m)
    return (
        np.log10(np.linalg.det(m)),
        np.log10(np.trace(np.linalg.inv(m))),
        np.log10(np.trace(m)),
        np.log10(w[0]),
        np.log10(w[-1] / w[0]),
    )


@pytest.mark.parametrize("t_new", sorted(ref.ROONEY_A2))
def test_rooney_biegler_a2_criteria(rooney, t_new):
    # The prior is the sum of single-measurement FIMs: independent experiments add.
    prior = sum(
        fk.fisher_information(rooney.model, rooney.theta, [t], noise=rooney.noise)
        for t in ref.ROONEY_A2_PRIOR_TIMES
    )
    new = fk.fisher_information(rooney.model, rooney.theta, [t_new], noise=rooney.noise)
    np.testing.assert_allclose(_criteria((prior + new).matrix), ref.ROONEY_A2[t_new], rtol=1e-8)


def test_rooney_biegler_prior_equals_one_design_with_all_times(rooney):
    prior = sum(
        fk.fisher_information(rooney.model, rooney.theta, [t], noise=rooney.noise)
        for t in ref.ROONEY_A2_PRIOR_TIMES
    )
    joint = fk.fisher_information(
        rooney.model, rooney.theta, list(ref.ROONEY_A2_PRIOR_TIMES), noise=rooney.noise
    )
    np.testing.assert_allclose(prior.matrix, joint.matrix, rtol=1e-12)


@pytest.fixture(scope="module")
def cascade_fim():
    ex = fk.examples.kinase_cascade()
    return fk.fisher_information(ex.model, ex.theta, ex.design, noise=ex.noise, scale="log")


def test_cascade_diagonal_and_spectrum(cascade_fim):
    F = cascade_fim
    np.testing.assert_allclose(np.diag(F.matrix), ref.CASCADE_DIAGONAL, rtol=1e-6)
    w = np.linalg.eigvalsh(F.matrix)
    np.testing.assert_allclose(w[-6:], ref.CASCADE_EIGENVALUES[-6:], rtol=1e-6)
    # The sloppiest real direction is far above the solver noise floor of the null direction.
    np.testing.assert_allclose(w[1], ref.CASCADE_EIGENVALUES[0], rtol=1e-3)
    assert abs(w[0]) < 1e-14 * w[-1]


def test_cascade_null_direction(cascade_fim):
    assert cascade_fim.rank() == 7
    null = cascade_fim.null_space()[:, 0]
    expected = np.asarray(ref.CASCADE_NULL_DIRECTION) / np.sqrt(6)
    np.testing.assert_allclose(abs(null @ expected), 1.0, rtol=1e-8)
    # The eigenvector of a numerically singular F is only as accurate as eps·‖F‖ / gap
    # (≈ 7e-10 / 1.7e-5 here): a few 1e-6 is roundoff, not the solver.
    np.testing.assert_allclose(null * np.sign(null @ expected), expected, atol=2e-5)


def test_cascade_sensitivities_vanish_along_the_null_direction():
    """S·d = 0 for the discrete solution itself: the invariance survives the discretisation."""
    ex = fk.examples.kinase_cascade()
    theta = np.array([ex.theta[k] for k in ex.model.params])
    S = fk.sensitivities(ex.model, theta, ex.design) * theta  # ∂f/∂log k
    d = np.asarray(ref.CASCADE_NULL_DIRECTION) / np.sqrt(6)
    np.testing.assert_allclose(S @ d, 0.0, atol=1e-13 * np.abs(S).max())
