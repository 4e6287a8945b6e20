"""Local identifiability: rank, null space, verdicts, readable symmetries and combinations.

Truths: ../shared/reference/pk_bolus.md and ../shared/reference/cascade.md (closed-form arguments
for the null directions), closed-form reduced models, and inverses computed independently.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import fimkit as fk
from fimkit.errors import FimkitError
from fimkit.identifiability import (
    IDENTIFIABLE,
    NOT_IDENTIFIABLE,
    PRACTICALLY_NONIDENTIFIABLE,
    identifiability,
)
from fimkit.information.fim import DEFAULT_RTOL

PK_TIMES = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0])


@pytest.fixture(scope="module")
def pk():
    ex = fk.examples.pk_bolus()
    F = fk.fisher_information(ex.model, ex.theta, ex.design, noise=ex.noise, scale="log")
    return ex, F


@pytest.fixture(scope="module")
def cascade():
    ex = fk.examples.kinase_cascade()
    # Through the model, so that the symmetry is also checked by simulation.
    result = identifiability(ex.model, ex.theta, ex.design, noise=ex.noise)
    return ex, result


def reduced_pk_cov():
    """CRLB of (log A, log k) for C = A·exp(-k t), A = D/V = 10, k = CL/V = 0.2, σ = 1 (closed form)."""
    A, k = 10.0, 0.2
    c = A * np.exp(-k * PK_TIMES)
    S = np.column_stack([c, -k * PK_TIMES * c])  # ∂C/∂log A, ∂C/∂log k
    return np.linalg.inv(S.T @ S)


# -- pk_bolus: rank 2, the (1, 1, 1) scaling, D/V and CL/V --------------------------------------------
def test_pk_rank_spectrum_and_null_space(pk):
    _, F = pk
    r = identifiability(F)
    assert r.rank == 2
    assert r.rtol == DEFAULT_RTOL
    np.testing.assert_allclose(r.eigenvalues[1:], [37.4902398, 349.504266], rtol=1e-8)
    np.testing.assert_allclose(r.singular_values[:2], [349.504266, 37.4902398], rtol=1e-8)
    np.testing.assert_allclose(r.tolerance, DEFAULT_RTOL * 349.504266, rtol=1e-8)
    assert r.null_space.shape == (3, 1)
    np.testing.assert_allclose(r.null_space[:, 0], np.ones(3) / np.sqrt(3), atol=1e-12)
    # The null eigenvalue is roundoff (≈1e-14): the gap is over 12 decades wide.
    assert r.gap_decades > 12
    assert r.well_separated


def test_pk_verdicts(pk):
    _, F = pk
    r = identifiability(F)
    assert r.verdicts == {"CL": NOT_IDENTIFIABLE, "V": NOT_IDENTIFIABLE, "D": NOT_IDENTIFIABLE}
    assert r.nonidentifiable == ["CL", "V", "D"]
    assert r.practically_nonidentifiable == []
    np.testing.assert_allclose(r.null_weights, np.full(3, 1 / np.sqrt(3)), atol=1e-12)
    assert np.all(np.isinf(r.rse))


def test_pk_symmetry_reads_as_scaling(pk):
    _, F = pk
    r = identifiability(F)
    (sym,) = r.symmetries
    assert sym.integers == (1, 1, 1)
    assert sym.description == "CL, V, D scale together"
    assert sym.residual < 1e-12
    assert sym.exact is None  # no model given: first order only
    assert "CL, V, D scale together" in str(r.summary())


def test_pk_combinations_are_d_over_v_and_cl_over_v(pk):
    _, F = pk
    r = identifiability(F)
    exps = [c.exponents for c in r.combinations]  # over (CL, V, D)
    assert sorted(exps) == sorted([(0, -1, 1), (1, -1, 0)])
    assert [c.as_dict() for c in r.combinations] == [{"V": -1, "D": 1}, {"CL": 1, "V": -1}]
    by_text = {c.text: c for c in r.combinations}
    assert set(by_text) == {"D/V", "CL/V"}
    # Their bounds are those of the reduced model C = A·exp(-k t), A = D/V, k = CL/V.
    cov = reduced_pk_cov()
    np.testing.assert_allclose(by_text["D/V"].se ** 2, cov[0, 0], rtol=1e-8)
    np.testing.assert_allclose(by_text["CL/V"].se ** 2, cov[1, 1], rtol=1e-8)
    np.testing.assert_allclose(by_text["D/V"].value, 10.0, rtol=1e-14)
    np.testing.assert_allclose(by_text["CL/V"].value, 0.2, rtol=1e-14)


def test_pk_through_the_model_checks_the_symmetry(pk):
    ex, F = pk
    r = identifiability(ex.model, ex.theta, ex.design, noise=ex.noise)  # log scale by default
    assert r.scale == "log"
    np.testing.assert_allclose(r.fim.matrix, F.matrix, rtol=1e-12, atol=1e-12)
    (sym,) = r.symmetries
    assert sym.exact is True
    assert sym.check.startswith("exact")
    assert all(not c.local for c in r.combinations)


def test_pk_linear_scale_points_to_the_log_scale(pk):
    _, F = pk
    r = identifiability(F.to_scale("lin"))
    assert r.rank == 2
    # A scaling symmetry is the direction θ on the linear scale.
    theta = np.array([2.0, 10.0, 100.0])
    np.testing.assert_allclose(r.null_space[:, 0], theta / np.linalg.norm(theta), atol=1e-12)
    assert any("scaling symmetries" in n and "(1, 1, 1)" in n for n in r.notes)
    assert identifiability(F, scale="lin").rank == 2


def test_pk_dose_known_practical_identifiability(pk):
    _, F = pk
    F2 = F.select(["CL", "V"])
    truth_rse = 100 * np.sqrt(np.diag(np.linalg.inv(F2.matrix)))  # log scale: RSE = 100·SE(log θ)
    r = identifiability(F2, rse_threshold=12.0)
    assert r.rank == 2 and r.null_space.shape == (2, 0) and r.gap_decades is None
    np.testing.assert_allclose(r.eigenvalues, [32.1298893, 135.937793], rtol=1e-8)
    np.testing.assert_allclose(r.rse, truth_rse, rtol=1e-10)
    assert truth_rse[0] > 12.0 > truth_rse[1]  # the threshold sits between the two
    assert r.verdicts == {"CL": PRACTICALLY_NONIDENTIFIABLE, "V": IDENTIFIABLE}
    assert r.practically_nonidentifiable == ["CL"]
    assert r.symmetries == () and r.combinations == ()
    assert identifiability(F2).practically_nonidentifiable == []  # default threshold 50 %


# -- the kinase cascade: rank 7, null ∝ (1, -2, -1, 0, ...) -------------------------------------------
def test_cascade_rank_and_null_direction(cascade):
    _, r = cascade
    assert r.rank == 7
    truth = np.array([1, -2, -1, 0, 0, 0, 0, 0]) / np.sqrt(6)
    v = r.null_space[:, 0]
    v = v * np.sign(v @ truth)
    np.testing.assert_allclose(v, truth, atol=1e-5)
    # The six largest eigenvalues, cascade.md (rtol 1e-6 there).
    np.testing.assert_allclose(
        r.eigenvalues[2:],
        [4.87015764e-02, 17.1340565, 3267.42284, 20486.8675, 56556.0217, 3458856.67],
        rtol=1e-5,
    )
    assert r.gap_decades > 4


def test_cascade_verdicts_and_local_symmetry(cascade):
    _, r = cascade
    assert r.nonidentifiable == ["k1", "k2", "k3"]
    assert all(r.verdicts[k] != NOT_IDENTIFIABLE for k in ["k4", "k5", "k6", "k7", "k8"])
    (sym,) = r.symmetries
    assert sym.integers == (1, -2, -1, 0, 0, 0, 0, 0)
    assert sym.monomial == "k1/(k2^2·k3)"
    # k1 + k2 and k1·k3/(k1 + k2) are what is identifiable: the scaling is only first order.
    assert sym.exact is False
    assert "to first order" in sym.description


def test_cascade_combinations_span_the_invariant_lattice(cascade):
    _, r = cascade
    assert len(r.combinations) == 2
    coords = []
    for c in r.combinations:
        e = np.array(c.exponents)
        assert np.all(e[3:] == 0)
        assert e[0] - 2 * e[1] - e[2] == 0  # invariant under the null direction
        # {c : c1 - 2c2 - c3 = 0} has the basis (2, 1, 0), (1, 0, 1): c = c2·(2,1,0) + c3·(1,0,1).
        coords.append([e[1], e[2]])
        assert c.local
    assert abs(round(np.linalg.det(np.array(coords, dtype=float)))) == 1


# -- exact symmetries of other kinds ----------------------------------------------------------------
def test_linear_relation_on_the_linear_scale():
    model = fk.AnalyticModel(lambda t, p: (p["a"] + p["b"]) * t, params=["a", "b"], outputs=["y"])
    theta = {"a": 1.0, "b": 3.0}
    r = identifiability(model, theta, [1.0, 2.0, 3.0], noise=0.5, scale="lin")
    assert r.rank == 1
    (sym,) = r.symmetries
    assert sym.integers == (1, -1)
    assert sym.exact is True
    assert sym.description == "a → a + ε, b → b - ε leaves the predictions unchanged"
    (comb,) = r.combinations
    assert comb.kind == "linear" and comb.exponents == (1, 1) and comb.text == "a + b"
    # Var(a + b) for y = s·t with s = a + b: σ² / Σ t².
    np.testing.assert_allclose(comb.se**2, 0.25 / 14.0, rtol=1e-10)
    np.testing.assert_allclose(comb.value, 4.0, rtol=1e-14)


def test_parameter_without_effect():
    model = fk.AnalyticModel(lambda t, p: p["a"] * jnp.exp(-t), params=["a", "c"], outputs=["y"])
    r = identifiability(model, {"a": 2.0, "c": 5.0}, [0.5, 1.0], noise=0.1)
    assert r.verdicts == {"a": IDENTIFIABLE, "c": NOT_IDENTIFIABLE}
    assert r.symmetries[0].description == "c does not affect the predictions"
    assert r.combinations == ()
    # RSE of a (log scale): 100·σ/‖y‖ for y = a·e^{-t}, the sensitivity to log a being y itself.
    y = 2.0 * np.exp(-np.array([0.5, 1.0]))
    np.testing.assert_allclose(r.rse[0], 100 * 0.1 / np.linalg.norm(y), rtol=1e-10)


def test_two_independent_scalings():
    # y = a·b·exp(-c·d·t): only a·b and c·d are identifiable (exactly).
    model = fk.AnalyticModel(
        lambda t, p: p["a"] * p["b"] * jnp.exp(-p["c"] * p["d"] * t),
        params=["a", "b", "c", "d"],
        outputs=["y"],
    )
    r = identifiability(model, {"a": 2.0, "b": 3.0, "c": 0.5, "d": 0.4}, [0.5, 1, 2, 4], noise=0.1)
    assert r.rank == 2
    assert [s.integers for s in r.symmetries] == [(1, -1, 0, 0), (0, 0, 1, -1)]
    assert all(s.exact for s in r.symmetries)
    assert [c.as_dict() for c in r.combinations] == [{"a": 1, "b": 1}, {"c": 1, "d": 1}]
    # The bounds are those of y = A·exp(-k t) with A = a·b = 6, k = c·d = 0.2 (closed form).
    t = np.array([0.5, 1, 2, 4])
    y = 6.0 * np.exp(-0.2 * t)
    S = np.column_stack([y, -0.2 * t * y]) / 0.1
    cov = np.linalg.inv(S.T @ S)
    np.testing.assert_allclose([c.se**2 for c in r.combinations], np.diag(cov), rtol=1e-8)


def test_integer_kernel_is_a_lattice_basis():
    from fimkit.identifiability.local import _gcd_of_minors, integer_kernel

    for rows in (
        [[1, -2, -1]],
        [[6, 10, 15]],
        [[2, 4, 6], [1, 1, 1]],
        [[1, 1, 0, 0], [0, 0, 1, 1]],
    ):
        rows = np.array(rows)
        basis = np.array(integer_kernel(rows))
        assert basis.shape == (rows.shape[1] - np.linalg.matrix_rank(rows), rows.shape[1])
        assert np.all(basis @ rows.T == 0)
        assert _gcd_of_minors(basis) == 1  # generates every integer solution, not a sublattice


def test_cascade_rank_cut_is_close_to_a_real_eigenvalue(cascade):
    _, r = cascade
    # 1.67e-5 is a real sloppy eigenvalue (cascade.md), 1.7 decades above the tolerance.
    assert r.margin_decades < 2
    assert not r.well_separated
    assert "depends on rtol" in str(r.summary())


def test_rtol_moves_the_rank_cut(cascade):
    _, r = cascade
    # 1.67e-5 / 3.46e6 ≈ 4.8e-12: a tolerance above it discards that sloppy direction too.
    loose = identifiability(r.fim, rtol=1e-10)
    assert loose.rank == 6
    assert loose.rtol == 1e-10
    assert r.fim.rank(1e-10) == 6


# -- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, 0.0, -1e-3, 1.5, float("nan"), "1e-8", True])
def test_rtol_must_be_in_0_1(pk, bad):
    _, F = pk
    with pytest.raises(FimkitError, match="'rtol'") as info:
        identifiability(F, rtol=bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", [0, -5.0, float("nan"), "50"])
def test_rse_threshold_must_be_positive(pk, bad):
    _, F = pk
    with pytest.raises(FimkitError, match="'rse_threshold'") as info:
        identifiability(F, rse_threshold=bad)
    assert repr(bad) in str(info.value)


def test_rational_tol_must_be_positive(pk):
    _, F = pk
    with pytest.raises(FimkitError, match=r"'rational_tol'.*-1"):
        identifiability(F, rational_tol=-1.0)


def test_first_argument_must_be_information_or_model(pk):
    _, F = pk
    with pytest.raises(FimkitError, match="FisherInformation, or a fimkit model"):
        identifiability(F.matrix)


def test_information_takes_no_theta(pk):
    ex, F = pk
    with pytest.raises(FimkitError, match=r"\['theta'\]"):
        identifiability(F, ex.theta)


def test_model_needs_noise(pk):
    ex, _ = pk
    with pytest.raises(FimkitError, match=r"missing \['noise'\]"):
        identifiability(ex.model, ex.theta, ex.design)
