"""Sloppiness spectra, the eigenvalue ladder plot, and prediction uncertainty by eigen-direction.

Truths: ../shared/reference/sloppiness.md S1 (copied to tests/results/sloppiness_s1.py) on the stored
Hessians of ../shared/data/gutenkunst2007 (skipped when the data folder is absent), matrices built
from a known spectrum, closed-form reduced models and inverses computed independently.
"""

import io
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import fimkit as fk
from fimkit.errors import FimkitError
from fimkit.identifiability import (
    PredictionUncertainty,
    Sloppiness,
    plot_spectrum,
    prediction_uncertainty,
    sloppiness,
)
from tests.results import sloppiness_s1 as ref

S1, SPAN_ATOL = ref.S1, ref.SPAN_ATOL
VON_DASSOW_COLUMNS, VON_DASSOW_NAN_COLUMNS = ref.VON_DASSOW_COLUMNS, ref.VON_DASSOW_NAN_COLUMNS


def shared_data() -> Path:
    env = os.environ.get("FIMKIT_SHARED_DATA")
    return Path(env) if env else Path(__file__).parents[2] / "shared" / "data"


GUTENKUNST = shared_data() / "gutenkunst2007"
needs_data = pytest.mark.skipif(
    not GUTENKUNST.is_dir(),
    reason=f"shared data not found at {GUTENKUNST} (set FIMKIT_SHARED_DATA to the data folder)",
)


def load_hessian(folder: str) -> tuple[np.ndarray, list[str]]:
    """A SloppyCell Hessian: whitespace-separated rows, and one parameter name per line."""
    H = np.loadtxt(GUTENKUNST / folder / "hessian.dat")
    names = (GUTENKUNST / folder / "hessian_keys.dat").read_text().split()
    return H, names


def known_matrix(eigenvalues, seed=0):
    """Q diag(λ) Qᵀ with a random orthogonal Q."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(len(eigenvalues), len(eigenvalues))))
    return (q * np.asarray(eigenvalues)) @ q.T, q


@pytest.fixture(scope="module")
def pk():
    ex = fk.examples.pk_bolus()
    return fk.fisher_information(ex.model, ex.theta, ex.design, noise=ex.noise, scale="log")


# -- S1: Gutenkunst et al. 2007 ----------------------------------------------------------------------
@needs_data
@pytest.mark.parametrize(("folder", "n", "n3", "n6", "span", "nonpositive"), S1)
def test_s1_gutenkunst_spectra(folder, n, n3, n6, span, nonpositive):
    H, names = load_hessian(folder)
    s = sloppiness(H, names, label=folder)
    assert s.size == n
    assert (s.n3, s.n6) == (n3, n6)
    assert s.counts == {3.0: n3, 6.0: n6}
    roundoff_span = -np.log10(s.roundoff)  # N·ε: below it no eigenvalue has a determined sign
    if span < roundoff_span:
        np.testing.assert_allclose(s.span, span, atol=SPAN_ATOL, rtol=0)
    else:
        # The table's smallest positive eigenvalue lies within roundoff of zero: its value (and
        # sign) depends on the LAPACK build. We agree that the spectrum reaches that far.
        assert s.n_zero >= 1
    # The table's count of eigenvalues ≤ 0 lies between ours below -roundoff and ours ≤ +roundoff.
    assert s.n_negative <= nonpositive <= s.n_negative + s.n_zero
    assert span > 5  # "every model spans more than 5 decades"
    if s.n_negative:
        # Negative eigenvalues of a χ² Hessian are noise: they set the floor.
        assert s.noise_floor_source == "most negative eigenvalue"
        np.testing.assert_allclose(
            s.noise_floor, -np.min(np.linalg.eigvalsh(H)) / np.max(np.linalg.eigvalsh(H)), rtol=1e-8
        )


@needs_data
def test_von_dassow_nan_columns_are_reported_then_dropped():
    H, names = load_hessian("von_Dassow_2000")
    assert H.shape == (VON_DASSOW_COLUMNS, VON_DASSOW_COLUMNS)
    with pytest.raises(FimkitError, match=r"NaN or infinite entries.*11 parameter"):
        sloppiness(H, names)
    keep = ~np.all(np.isnan(H), axis=0)
    assert int(np.sum(~keep)) == VON_DASSOW_NAN_COLUMNS
    s = sloppiness(H[np.ix_(keep, keep)], [n for n, k in zip(names, keep, strict=True) if k])
    assert s.size == VON_DASSOW_COLUMNS - VON_DASSOW_NAN_COLUMNS


@needs_data
def test_ladder_of_several_models():
    spectra = {f: sloppiness(*load_hessian(f)) for f in ("Tyson_1991", "Brown_2004", "Lee_2003")}
    fig = plot_spectrum(spectra)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    labels = [t.get_text().splitlines()[0] for t in ax.get_xticklabels()]
    assert labels == ["Tyson_1991", "Brown_2004", "Lee_2003"]


# -- known spectra -----------------------------------------------------------------------------------
def test_known_spectrum_counts_span_and_loadings():
    lam = 10.0 ** -np.array([0.0, 1.5, 2.5, 4.0, 5.5, 7.0])
    names = ["a", "b", "c", "d", "e", "f"]
    m, q = known_matrix(5.0 * lam)
    s = sloppiness(m, names, decades=(2, 3, 6))
    np.testing.assert_allclose(s.normalized, lam, rtol=1e-8, atol=1e-15)
    assert s.counts == {2.0: 2, 3.0: 3, 6.0: 5}
    assert (s.n3, s.n6) == (3, 5)
    np.testing.assert_allclose(s.span, 7.0, rtol=1e-8)
    assert s.n_negative == 0 and s.n_zero == 0
    # Eigen-parameters: the columns of Q, largest loadings by name.
    stiff = s.stiff(1, top=6)[0]
    v = q[:, 0] * np.sign(q[np.argmax(np.abs(q[:, 0])), 0])
    assert dict(stiff.loadings) == pytest.approx(dict(zip(names, v, strict=True)), abs=1e-10)
    np.testing.assert_allclose(
        [abs(c) for _, c in stiff.loadings], sorted(np.abs(v), reverse=True), rtol=1e-10
    )
    sloppiest = s.sloppy(1)[0]
    assert sloppiest.index == 5
    np.testing.assert_allclose(sloppiest.relative, 1e-7, rtol=1e-6)


def test_axis_aligned_eigenparameters_name_their_parameter():
    s = sloppiness(np.diag([1.0, 1e-4, 1e2]), ["k1", "k2", "k3"])
    assert [e.loadings[0] for e in s.stiff(3, top=1)] == [("k3", 1.0), ("k1", 1.0), ("k2", 1.0)]
    assert s.sloppy(1, top=1)[0].loadings == (("k2", 1.0),)


def test_noise_floor_from_negative_eigenvalue_and_given():
    lam = [1.0, 1e-3, 1e-6, 1e-9, -2e-8]
    m, _ = known_matrix(lam, seed=1)
    s = sloppiness(m, list("abcde"))
    assert s.noise_floor_source == "most negative eigenvalue"
    np.testing.assert_allclose(s.noise_floor, 2e-8, rtol=1e-6)
    assert s.n_negative == 1 and s.n_below_noise == 2
    np.testing.assert_allclose(s.resolved_span, 6.0, rtol=1e-6)
    np.testing.assert_allclose(s.span, 9.0, rtol=1e-6)
    assert [e.resolved for e in s.sloppy(2)] == [False, False]
    given = sloppiness(m, list("abcde"), noise_floor=1e-4)
    assert given.noise_floor == 1e-4 and given.noise_floor_source == "given"
    np.testing.assert_allclose(given.resolved_span, 3.0, rtol=1e-6)


def test_information_input(pk):
    s = sloppiness(pk)
    assert s.names == ("CL", "V", "D") and s.scale == "log" and s.label == "pk_bolus"
    np.testing.assert_allclose(s.eigenvalues[:2], [349.504266, 37.4902398], rtol=1e-8)
    np.testing.assert_allclose(s.span, np.log10(349.504266 / 37.4902398), rtol=1e-8)
    assert s.n_zero == 1  # the scaling symmetry: an eigenvalue at roundoff
    assert "Eigenvalue spectrum of pk_bolus" in str(s.summary())


def test_plot_returns_figure(pk):
    from matplotlib.figure import Figure

    s = sloppiness(pk)
    fig = s.plot()
    assert isinstance(fig, Figure)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    fig2 = Figure()
    ax = fig2.add_subplot()
    assert plot_spectrum([pk, s], ax=ax, labels=["information", "spectrum"]) is fig2
    assert len(ax.get_xticks()) == 2


# -- prediction uncertainty --------------------------------------------------------------------------
def test_prediction_variance_and_shares(pk):
    F2 = pk.select(["CL", "V"])  # dose known: full rank
    g = np.array([1.0, -1.0])  # ∇ log(CL/V) on the log scale
    pu = prediction_uncertainty(F2, g)
    assert isinstance(pu, PredictionUncertainty)
    np.testing.assert_allclose(pu.variance, [g @ np.linalg.solve(F2.matrix, g)], rtol=1e-10)
    np.testing.assert_allclose(pu.share.sum(axis=1), [1.0], rtol=1e-12)
    w, v = np.linalg.eigh(F2.matrix)
    np.testing.assert_allclose(
        pu.contributions[0], ((g @ v) ** 2 / w)[::-1], rtol=1e-10
    )  # stiffest first
    by_callable = prediction_uncertainty(F2, lambda p: jnp.log(p["CL"] / p["V"]))
    np.testing.assert_allclose(by_callable.gradient, [g], rtol=1e-12)
    np.testing.assert_allclose(by_callable.variance, pu.variance, rtol=1e-10)
    by_name = prediction_uncertainty(F2, {"CL": 1.0, "V": -1.0})
    np.testing.assert_allclose(by_name.variance, pu.variance, rtol=1e-12)


def test_prediction_along_null_direction_is_infinite(pk):
    pu = prediction_uncertainty(pk, np.array([[0.0, -1.0, 1.0], [1.0, 0.0, 0.0]]))
    # log(D/V) is identifiable: its variance is that of log A in C = A·exp(-k t).
    t = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0])
    c = 10.0 * np.exp(-0.2 * t)
    S = np.column_stack([c, -0.2 * t * c])
    cov = np.linalg.inv(S.T @ S)
    np.testing.assert_allclose(pu.variance[0], cov[0, 0], rtol=1e-8)
    # log CL alone moves along (1, 1, 1): infinite, never a pseudo-inverse.
    assert np.isinf(pu.variance[1])
    assert list(pu.identifiable) == [True, False]
    assert np.all(np.isnan(pu.share[1]))
    share, direction = pu.dominant(1, n=1)[0]
    assert share == 1.0 and "CL" in direction


# -- bad input ---------------------------------------------------------------------------------------
def test_plain_matrix_needs_names():
    with pytest.raises(fk.errors.ParameterError, match="names"):
        sloppiness(np.eye(2))
    with pytest.raises(fk.errors.ParameterError, match=r"2 distinct names.*Got 3"):
        sloppiness(np.eye(2), ["a", "b", "c"])


def test_matrix_must_be_square_symmetric_and_have_a_positive_eigenvalue():
    with pytest.raises(FimkitError, match=r"square matrix. Got shape \(2, 3\)"):
        sloppiness(np.ones((2, 3)), ["a", "b"])
    with pytest.raises(FimkitError, match=r"symmetric.*asymmetry"):
        sloppiness(np.array([[1.0, 0.5], [0.0, 1.0]]), ["a", "b"])
    with pytest.raises(FimkitError, match="no positive eigenvalue"):
        sloppiness(-np.eye(2), ["a", "b"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"decades": [0]}, "'decades'.*Got 0"),
        ({"decades": "36"}, "'decades'"),
        ({"noise_floor": 1.5}, "'noise_floor'.*1.5"),
        ({"noise_floor": -1e-9}, "'noise_floor'.*-1e-09"),
    ],
)
def test_option_errors(kwargs, match):
    with pytest.raises(FimkitError, match=match):
        sloppiness(np.eye(2), ["a", "b"], **kwargs)


def test_prediction_uncertainty_errors(pk):
    with pytest.raises(FimkitError, match="3 columns"):
        prediction_uncertainty(pk, [1.0, 2.0])
    with pytest.raises(fk.errors.ParameterError, match="unknown parameter names"):
        prediction_uncertainty(pk, {"Q": 1.0})
    with pytest.raises(FimkitError, match=r"'rtol'.*-1"):
        prediction_uncertainty(pk, [1.0, 0.0, 0.0], rtol=-1)
    with pytest.raises(FimkitError, match="'fim'"):
        prediction_uncertainty(pk.matrix, [1.0, 0.0, 0.0])


def test_plot_rejects_other_things():
    with pytest.raises(FimkitError, match="plot_spectrum"):
        plot_spectrum("Tyson")
    with pytest.raises(FimkitError, match="one label per spectrum"):
        plot_spectrum([sloppiness(np.eye(2), ["a", "b"])], labels=["x", "y"])


def test_result_types():
    assert isinstance(sloppiness(np.eye(2), ["a", "b"]), Sloppiness)
