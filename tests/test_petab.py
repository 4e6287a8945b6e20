"""PEtab import.

A PEtab problem written by the tests (the SBML model of test_sbml with a general time event,
pre-equilibration, condition overrides, placeholders, every noise distribution and transformation)
is checked against a simulation written independently with scipy; the benchmark collection (when
../shared/data is present) against the reference log-likelihoods; the expected information against
the Gauss–Newton sum of finite-difference sensitivities (fixed noise) and against a Monte Carlo
estimate of the score covariance (estimated noise).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

import fimkit as fk

pytest.importorskip("libsbml")
pytest.importorskip("petab")
pd = pytest.importorskip("pandas")
scipy_stats = pytest.importorskip("scipy.stats")
from scipy.integrate import solve_ivp  # noqa: E402

from fimkit.errors import FimkitError, SolverError  # noqa: E402
from fimkit.models.petab import SOLVER_PRESETS, PetabError, lint_petab, load_petab  # noqa: E402
from tests.test_sbml import _math, build_sbml  # noqa: E402

SHARED = Path(
    os.environ.get("FIMKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
BENCHMARK = SHARED / "petab-benchmark"

# -- a PEtab problem written by the tests ---------------------------------------------------------------

PARAMETERS = [
    # id, scale, lower, upper, nominal, estimate
    ("k1", "log10", 1e-3, 1e3, 0.8, 1),
    ("Km", "log", 1e-3, 1e3, 2.0, 1),
    ("k2", "lin", 0.0, 10.0, 0.5, 1),
    ("kdeg", "log10", 1e-3, 1e3, 0.3, 1),
    ("kin", "lin", 0.0, 10.0, 0.2, 0),
    ("dose", "lin", 0.0, 10.0, 1.5, 1),
    ("kp", "log10", 1e-3, 1e3, 0.4, 0),
    ("scale_A", "log10", 1e-3, 1e3, 2.0, 1),
    ("offset_A", "lin", -5.0, 5.0, 0.1, 1),
    ("sigma_A", "log10", 1e-3, 1e3, 0.15, 1),
    ("sigma_E", "log", 1e-3, 1e3, 0.2, 1),
    ("kin_c2", "lin", 0.0, 10.0, 0.3, 1),
    ("t_ev", "lin", 2.5, 5.0, 3.5, 1),
]
PARAMETER_COLUMNS = [
    "parameterId",
    "parameterScale",
    "lowerBound",
    "upperBound",
    "nominalValue",
    "estimate",
]
OBSERVABLE_COLUMNS = [
    "observableId",
    "observableFormula",
    "noiseFormula",
    "observableTransformation",
    "noiseDistribution",
]
TIMES = [0.0, 0.5, 1.5, 2.5, 3.0, 4.0, 6.0]
EXPERIMENTS = [("c0", "c1"), (None, "c2")]
OBSERVABLES = {
    # id: formula, noise formula, transformation, distribution, observableParameters, noiseParameters
    "obs_A": (
        "observableParameter1_obs_A * A + offset_A",
        "noiseParameter1_obs_A",
        "lin",
        "normal",
        "scale_A",
        "sigma_A",
    ),
    "obs_C": ("C", "0.1", "log", "normal", "", ""),
    "obs_E": ("E", "noiseParameter1_obs_E * (1 + 0.1 * obs_E)", "lin", "laplace", "", "sigma_E"),
    "obs_tot": ("total", "noiseParameter1_obs_tot", "log10", "normal", "", "0.05"),
}


def _extra(m):
    """E is degraded too (so the model has a steady state); the event time is a parameter."""
    t_ev = m.createParameter()
    t_ev.setId("t_ev")
    t_ev.setValue(3.5)
    t_ev.setConstant(True)
    rx = m.createReaction()
    rx.setId("R6")
    rx.setReversible(False)
    ref = rx.createReactant()
    ref.setSpecies("E")
    ref.setStoichiometry(1)
    ref.setConstant(True)
    _math(rx.createKineticLaw(), "cell * kdeg * E")


def rhs_numpy(t, y, p, kin):
    A, B, C, Bnd, E, P = y
    cell, nuc = 2.0, 0.5
    inp = 1.0 if t < 2 else 0.25
    v1 = cell * p["k1"] * A / (p["Km"] + A)
    v2 = 0.7 * B * inp
    v3 = nuc * p["kdeg"] * C
    v4 = cell * kin * Bnd
    v5 = cell * p["k2"] * A
    v6 = cell * p["kdeg"] * E
    return [
        (-v1 + v4 - v5) / cell,
        2 * v1 - v2,
        (v2 - v3) / nuc,
        0.0,
        (v5 - v6) / cell,
        -p["kp"] * P + A + C,
    ]


def simulate_truth(p: dict) -> dict:
    """States at TIMES for each experiment, by scipy (Radau), with the switch at t = 2 and the
    event A = 0.5 A + dose at t = t_ev handled by splitting the integration."""
    out = {}
    kw = dict(method="Radau", rtol=1e-12, atol=1e-14)
    for pre, sim in EXPERIMENTS:
        kin = {"c0": 0.1, "c1": 0.2, "c2": p["kin_c2"]}
        y0 = np.array([1.0, 0.5, 0.4, 3.0, 2 * p["k2"], 1.0])
        if pre is not None:
            k_pre = kin[pre]
            ss = solve_ivp(lambda t, y, k=k_pre: rhs_numpy(t, y, p, k), (0, 1e4), y0, **kw).y[:, -1]
            assert np.max(np.abs(rhs_numpy(1e4, ss, p, kin[pre]))) < 1e-10
            y0 = ss.copy()
            y0[1] = 1.0  # c1 sets B
        f = lambda t, y, k=kin[sim]: rhs_numpy(t, y, p, k)  # noqa: E731
        ts = np.asarray(TIMES)
        saved, y = [], y0
        t_ev = p["t_ev"]
        for a, b in ((0.0, 2.0), (2.0, t_ev), (t_ev, 6.0)):
            inside = ts[(ts >= a) & ((ts < b) | (b == 6.0))]
            sol = solve_ivp(f, (a, b), y, t_eval=np.unique([*inside, b]), **kw)
            saved.append(sol.y[:, np.isin(sol.t, inside)])
            y = sol.y[:, -1].copy()
            if b == t_ev:
                y[0] = 0.5 * y[0] + p["dose"]
        out[sim] = np.concatenate(saved, axis=1).T
    return out


def loglike_truth(meas, p: dict, x_names=None) -> float:
    states = simulate_truth(p)
    ll = 0.0
    for _, r in meas.iterrows():
        y = states[r["simulationConditionId"]][TIMES.index(r["time"])]
        A, C, E, total = y[0], y[2], y[4], y[0] + y[2]
        v = r["measurement"]
        o = r["observableId"]
        if o == "obs_A":
            ll += scipy_stats.norm.logpdf(v, p["scale_A"] * A + p["offset_A"], p["sigma_A"])
        elif o == "obs_C":
            ll += scipy_stats.norm.logpdf(np.log(v), np.log(C), 0.1) - np.log(v)
        elif o == "obs_E":
            ll += scipy_stats.laplace.logpdf(v, E, p["sigma_E"] * (1 + 0.1 * E))
        else:
            ll += scipy_stats.norm.logpdf(np.log10(v), np.log10(total), 0.05) - np.log(
                v * np.log(10)
            )
    return float(ll)


def nominal_lin() -> dict:
    return {r[0]: r[4] for r in PARAMETERS}


def write_problem(root: Path, *, measurements=None, tweak=None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.xml").write_text(
        build_sbml(event="0.5 * A + dose", event_time="t_ev", extra=_extra)
    )
    pd.DataFrame(
        PARAMETERS,
        columns=PARAMETER_COLUMNS,
    ).to_csv(root / "parameters.tsv", sep="\t", index=False)
    pd.DataFrame(
        {"conditionId": ["c0", "c1", "c2"], "kin": [0.1, 0.2, "kin_c2"], "B": [np.nan, 1.0, np.nan]}
    ).to_csv(root / "conditions.tsv", sep="\t", index=False)
    pd.DataFrame(
        [(k, *v[:4]) for k, v in OBSERVABLES.items()],
        columns=OBSERVABLE_COLUMNS,
    ).to_csv(root / "observables.tsv", sep="\t", index=False)
    if measurements is None:
        measurements = _measurements()
    if tweak is not None:
        tweak(root, measurements)
    measurements.to_csv(root / "measurements.tsv", sep="\t", index=False)
    (root / "problem.yaml").write_text(
        "format_version: 1\nparameter_file: parameters.tsv\nproblems:\n- condition_files: [conditions.tsv]\n"
        "  measurement_files: [measurements.tsv]\n  observable_files: [observables.tsv]\n"
        "  sbml_files: [model.xml]\n"
    )
    return root / "problem.yaml"


def _measurements() -> pd.DataFrame:
    p = nominal_lin()
    states = simulate_truth(p)
    rng = np.random.default_rng(7)
    rows = []
    for pre, sim in EXPERIMENTS:
        for ti, t in enumerate(TIMES):
            y = states[sim][ti]
            for o, (_, _, _, _, opar, npar) in OBSERVABLES.items():
                A, C, E = y[0], y[2], y[4]
                value = {
                    "obs_A": p["scale_A"] * A + p["offset_A"] + 0.1 * rng.standard_normal(),
                    "obs_C": C * np.exp(0.1 * rng.standard_normal()),
                    "obs_E": E + 0.1 * rng.laplace(),
                    "obs_tot": (A + C) * 10 ** (0.05 * rng.standard_normal()),
                }[o]
                rows.append((o, pre or "", sim, value, t, opar, npar))
    return pd.DataFrame(
        rows,
        columns=[
            "observableId",
            "preequilibrationConditionId",
            "simulationConditionId",
            "measurement",
            "time",
            "observableParameters",
            "noiseParameters",
        ],
    )


@pytest.fixture(scope="module")
def problem_path(tmp_path_factory) -> Path:
    return write_problem(tmp_path_factory.mktemp("petab") / "p")


@pytest.fixture(scope="module")
def problem(problem_path):
    # The model is not stiff: the explicit solver compiles several times faster than the default
    # implicit one, which test_default_solver covers.
    return load_petab(problem_path, solver="tsit5", rtol=1e-10, atol=1e-12)


def test_structure(problem):
    assert problem.parameter_ids == tuple(r[0] for r in PARAMETERS if r[5] == 1)
    assert problem.names[:4] == ("log10(k1)", "log(Km)", "k2", "log10(kdeg)")
    assert problem.experiments == (("c0", "c1"), (None, "c2"))
    x = problem.nominal()
    np.testing.assert_allclose(x[:4], [np.log10(0.8), np.log(2.0), 0.5, np.log10(0.3)], rtol=1e-15)
    assert problem.unscale(x)["Km"] == pytest.approx(2.0, rel=1e-14)


def test_loglike_matches_an_independent_simulation(problem):
    truth = loglike_truth(problem.measurements, nominal_lin())
    assert problem.loglike() == pytest.approx(truth, rel=1e-8)
    # Away from the nominal values too (every estimated parameter moved).
    x = problem.nominal() + 0.05
    p = {**nominal_lin(), **problem.unscale(x)}
    assert problem.loglike(x) == pytest.approx(loglike_truth(problem.measurements, p), rel=1e-8)


def test_default_solver(problem_path):
    """The default solver (implicit Kvaerno5, rtol = atol = 1e-8) on the same problem."""
    problem = load_petab(problem_path)
    assert problem.solver_options["solver"] == "kvaerno5"
    truth = loglike_truth(problem.measurements, nominal_lin())
    assert problem.loglike() == pytest.approx(truth, rel=1e-7)


def test_simulate_reports_observables_and_sigmas(problem):
    df = problem.simulate()
    states = simulate_truth(nominal_lin())
    row = df[(df.observableId == "obs_E") & (df.simulationConditionId == "c2") & (df.time == 4.0)]
    E = states["c2"][TIMES.index(4.0)][4]
    assert float(row["simulation"].iloc[0]) == pytest.approx(E, rel=1e-8)
    assert float(row["sigma"].iloc[0]) == pytest.approx(0.2 * (1 + 0.1 * E), rel=1e-8)


def test_gradient_matches_finite_differences(problem):
    x = problem.nominal()
    g = problem.gradient(x)
    h = 1e-5
    fd = np.array(
        [
            (problem.loglike(x + h * e) - problem.loglike(x - h * e)) / (2 * h)
            for e in np.eye(x.size)
        ]
    )
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5)


def test_only_parameters_of_the_dynamics_go_through_the_solver(problem):
    """Observable, scaling and noise parameters get no solver sensitivities; the FIM's Jacobian
    (states linear in the dynamic parameters, the rest direct) equals a full forward-mode
    Jacobian through the solver."""
    import jax

    ids = problem.parameter_ids
    dynamic = {ids[i] for i in problem._dynamic_parameters()}
    assert {"scale_A", "offset_A", "sigma_A", "sigma_E"}.isdisjoint(dynamic)
    assert {"k1", "Km", "k2", "kdeg", "t_ev"} <= dynamic
    predict = problem._predict_fn()[0]
    location = problem._loglike_terms()[0]
    x = problem.nominal()

    def full(x):
        h, sigma, *_ = predict(x)
        return jax.numpy.concatenate([location(h), sigma])

    J = np.asarray(jax.jit(jax.jacfwd(full))(x))
    Jl, Js = problem.sensitivities(x)
    assert len(dynamic) < len(ids) and np.abs(Jl).max() > 0
    scale = np.abs(J).max(axis=0)
    np.testing.assert_allclose(np.vstack([Jl, Js]) / scale, J / scale, rtol=0, atol=1e-10)


def test_observed_information_matches_finite_differences_of_the_gradient(problem):
    x = problem.nominal()
    obs = problem.observed_information(x)
    assert isinstance(obs, fk.FisherInformation)
    h = 1e-5
    fd = np.array(
        [
            (problem.gradient(x + h * e) - problem.gradient(x - h * e)) / (2 * h)
            for e in np.eye(x.size)
        ]
    )
    np.testing.assert_allclose(obs.matrix, -0.5 * (fd + fd.T), rtol=1e-4, atol=1e-4)


def _score_terms(problem, x, y):
    """∂ℓ/∂location and ∂ℓ/∂σ per measurement, written from the densities (not from fimkit)."""
    sim = problem.simulate(x)
    h, s = sim["simulation"].to_numpy(), sim["sigma"].to_numpy()
    obs = sim["observableId"].to_numpy()
    loc_y = np.where(
        obs == "obs_C", np.log(np.abs(y)), np.where(obs == "obs_tot", np.log10(np.abs(y)), y)
    )
    loc_h = np.where(obs == "obs_C", np.log(h), np.where(obs == "obs_tot", np.log10(h), h))
    r = loc_y - loc_h
    laplace = obs == "obs_E"
    d_loc = np.where(laplace, np.sign(r) / s, r / s**2)
    d_sig = np.where(laplace, -1 / s + np.abs(r) / s**2, -1 / s + r**2 / s**3)
    return d_loc, d_sig, h, s, loc_h, laplace


def test_expected_information_matches_monte_carlo_score_covariance(problem):
    """With estimated σ the information includes 2 ∂σᵀ∂σ/σ² (normal) and ∂bᵀ∂b/b² (Laplace):
    E[s sᵀ] over data simulated from the model agrees with it."""
    x = problem.nominal()
    F = problem.fisher_information(x)
    Jl, Js = problem.sensitivities(x)
    _, _, h, s, loc_h, laplace = _score_terms(problem, x, problem._y)
    rng = np.random.default_rng(1)
    n = 40_000
    eps = np.where(laplace, rng.laplace(size=(n, h.size)), rng.standard_normal((n, h.size)))
    loc = loc_h + s * eps
    obs = problem.measurements["observableId"].to_numpy()
    y = np.where(obs == "obs_C", np.exp(loc), np.where(obs == "obs_tot", 10**loc, loc))
    r = loc - loc_h
    d_loc = np.where(laplace, np.sign(r) / s, r / s**2)
    d_sig = np.where(laplace, -1 / s + np.abs(r) / s**2, -1 / s + r**2 / s**3)
    scores = d_loc @ Jl + d_sig @ Js
    mc = scores.T @ scores / n
    se = np.sqrt(np.var(scores[:, :, None] * scores[:, None, :], axis=0) / n)
    assert np.all(np.abs(F.matrix - mc) < 5 * se + 1e-8 * np.abs(F.matrix).max())
    # fimkit's gradient for one simulated data set is the score used above.
    np.testing.assert_allclose(
        problem.gradient(x, measurements=y[0]), scores[0], rtol=1e-7, atol=1e-7
    )
    # The Gauss–Newton sum (σ-sensitivities counted like residual sensitivities) is not it.
    gn = Jl.T @ (Jl / s[:, None] ** 2) + Js.T @ (Js / s[:, None] ** 2)
    i = problem.names.index("log10(sigma_A)")
    assert F.matrix[i, i] == pytest.approx(2 * gn[i, i], rel=1e-10)


def test_fim_scales(problem):
    x = problem.nominal()
    F = problem.fisher_information(x)
    F_log = problem.fisher_information(x, scale="log")
    F_lin = problem.fisher_information(x, scale="lin")
    assert F_log.scale == "log" and F_log.names == problem.parameter_ids
    # log10(θ) = log(θ)/ln 10, so the information about log θ is I_log10 / ln(10)²; Km is on log.
    i, j = problem.names.index("log10(k1)"), problem.names.index("log(Km)")
    assert F_log.matrix[i, i] == pytest.approx(F.matrix[i, i] / np.log(10) ** 2, rel=1e-12)
    assert F_log.matrix[j, j] == pytest.approx(F.matrix[j, j], rel=1e-12)
    np.testing.assert_allclose(F_lin.to_scale("log").matrix, F_log.matrix, rtol=1e-10, atol=1e-12)


def _opt_in(request) -> None:
    """Heavy tests run only when asked for: ``pytest -m slow`` or FIMKIT_SLOW_TESTS=1."""
    expr = request.config.getoption("markexpr") or ""
    if os.environ.get("FIMKIT_SLOW_TESTS") == "1" or ("slow" in expr and "not slow" not in expr):
        return
    pytest.skip("heavy: run with `pytest -m slow` or FIMKIT_SLOW_TESTS=1")


@pytest.mark.slow
def test_information_of_a_split_measurement_table_adds_up(problem, request):
    _opt_in(request)
    meas = problem.measurements
    halves = [problem.with_measurements(meas.iloc[i::2]) for i in (0, 1)]
    total = sum(h.fisher_information().matrix for h in halves)
    np.testing.assert_allclose(total, problem.fisher_information().matrix, rtol=1e-8, atol=1e-8)


def test_fim_plugs_into_identifiability_and_sloppiness(problem):
    F = problem.fisher_information()
    ident = fk.identifiability(F)
    assert ident is not None
    slop = fk.sloppiness(F)
    assert slop is not None


def test_solver_failure_names_condition_and_time(problem_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = load_petab(problem_path, solver="tsit5", max_steps=3)
    with pytest.raises(SolverError, match=r"condition 'c2' failed (before|between) t="):
        p.loglike()


@pytest.fixture(scope="module")
def rodas_problem(problem_path):
    return load_petab(problem_path, solver="rodas5p", rtol=1e-10, atol=1e-12)


def test_rosenbrock_solver_matches_an_independent_simulation(rodas_problem, problem):
    """Rodas5P in fimkit's own loop (pre-equilibration, switches and an event included) against
    scipy's Radau, and its FIM against the explicit Tsit5 (a different method and step sequence),
    the derivative with respect to the event time t_ev (an estimated parameter) included."""
    truth = loglike_truth(rodas_problem.measurements, nominal_lin())
    assert rodas_problem.loglike() == pytest.approx(truth, rel=1e-8)
    F, G = rodas_problem.fisher_information().matrix, problem.fisher_information().matrix
    scale = np.sqrt(np.outer(np.diag(G), np.diag(G)))
    np.testing.assert_allclose(F / scale, G / scale, rtol=0, atol=1e-6)


def test_own_tsit5_loop_matches_diffrax_dopri5(problem_path, problem):
    """solver="tsit5" runs fimkit's own loop (dense output, unit-interval segments between
    switching and event times); diffrax's Dopri5 steps to every measurement time: same FIM,
    derivatives with respect to the event time included, and same log-likelihood."""
    dopri = load_petab(problem_path, solver="dopri5", rtol=1e-10, atol=1e-12)
    assert problem._solver() is None and dopri._solver() is not None
    assert problem.loglike() == pytest.approx(dopri.loglike(), rel=1e-9)
    F, G = problem.fisher_information().matrix, dopri.fisher_information().matrix
    scale = np.sqrt(np.outer(np.diag(G), np.diag(G)))
    np.testing.assert_allclose(F / scale, G / scale, rtol=0, atol=1e-6)


def test_rosenbrock_stage_loop_matches_unrolled_stages(problem_path, rodas_problem):
    """unroll=False (one traced stage in a loop, its sensitivities by `jax.jacfwd` through the
    solver) computes the same numbers as unrolled stages, whose sensitivities come from the one
    loop (`rosenbrock_sensitivities`) on each interval between the switching and event times:
    pre-equilibration, the switch, the event and its time (an estimated parameter) included."""
    looped = load_petab(problem_path, solver="rodas5p", rtol=1e-10, atol=1e-12, unroll=False)
    assert looped._unroll() is False and rodas_problem._unroll() is True
    assert rodas_problem._one_loop() and not looped._one_loop()
    assert looped.loglike() == pytest.approx(rodas_problem.loglike(), rel=1e-12)
    g, h = looped.gradient(), rodas_problem.gradient()
    np.testing.assert_allclose(g, h, rtol=1e-9, atol=1e-9 * np.abs(h).max())
    F, G = rodas_problem.fisher_information().matrix, looped.fisher_information().matrix
    scale = np.sqrt(np.outer(np.diag(G), np.diag(G)))
    np.testing.assert_allclose(F / scale, G / scale, rtol=0, atol=1e-9)


def write_smooth_problem(root: Path, *, observable_parameters: bool = True) -> Path:
    """A PEtab problem without switching times or events (two conditions, an estimated initial
    value, a saturating degradation): `load_petab` computes its states and their sensitivities in
    one Rosenbrock loop."""
    import libsbml

    from tests.test_sbml import _math

    root.mkdir(parents=True, exist_ok=True)
    doc = libsbml.SBMLDocument(3, 2)
    m = doc.createModel()
    m.setId("smooth")
    c = m.createCompartment()
    c.setId("cell")
    c.setSize(1.5)
    c.setConstant(True)
    for sid, value in (("A", 0.0), ("B", 0.0), ("C", 0.3)):
        sp_ = m.createSpecies()
        sp_.setId(sid)
        sp_.setCompartment("cell")
        sp_.setInitialConcentration(value)
        sp_.setHasOnlySubstanceUnits(False)
        sp_.setBoundaryCondition(False)
        sp_.setConstant(False)
    for pid, value in (("k1", 2.0), ("k2", 30.0), ("Km", 0.2), ("k3", 0.5), ("A0", 1.0)):
        q = m.createParameter()
        q.setId(pid)
        q.setValue(value)
        q.setConstant(True)
    ia = m.createInitialAssignment()
    ia.setSymbol("A")
    _math(ia, "A0")
    for rid, reactant, product, law in (
        ("R1", "A", "B", "cell * k1 * A"),
        ("R2", "B", "C", "cell * k2 * B / (Km + B)"),
        ("R3", "C", None, "cell * k3 * C * C"),
    ):
        rx = m.createReaction()
        rx.setId(rid)
        rx.setReversible(False)
        ref = rx.createReactant()
        ref.setSpecies(reactant)
        ref.setStoichiometry(1)
        ref.setConstant(True)
        if product:
            ref = rx.createProduct()
            ref.setSpecies(product)
            ref.setStoichiometry(1)
            ref.setConstant(True)
        _math(rx.createKineticLaw(), law)
    (root / "model.xml").write_text(libsbml.writeSBMLToString(doc))
    pd.DataFrame(
        [
            ("k1", "log10", 1e-3, 1e3, 2.0, 1),
            ("k2", "log", 1e-3, 1e3, 30.0, 1),
            ("Km", "lin", 0.0, 10.0, 0.2, 1),
            ("k3", "log10", 1e-3, 1e3, 0.5, 0),
            ("A0", "lin", 0.0, 10.0, 1.0, 1),
            ("k3_c2", "log10", 1e-3, 1e3, 0.8, 1),
            ("scale_B", "log10", 1e-3, 1e3, 2.0, int(observable_parameters)),
            ("sigma", "log10", 1e-3, 1e3, 0.05, int(observable_parameters)),
        ],
        columns=PARAMETER_COLUMNS,
    ).to_csv(root / "parameters.tsv", sep="\t", index=False)
    pd.DataFrame({"conditionId": ["c1", "c2"], "k3": ["k3", "k3_c2"]}).to_csv(
        root / "conditions.tsv", sep="\t", index=False
    )
    pd.DataFrame(
        [
            ("obs_B", "scale_B * B", "sigma", "lin", "normal"),
            ("obs_C", "C", "sigma", "log", "normal"),
        ],
        columns=OBSERVABLE_COLUMNS,
    ).to_csv(root / "observables.tsv", sep="\t", index=False)
    rng = np.random.default_rng(11)
    rows = [
        (o, cond, float(np.exp(rng.normal(-1.0, 0.5))), t)
        for cond in ("c1", "c2")
        for t in (0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0)
        for o in ("obs_B", "obs_C")
    ]
    pd.DataFrame(
        rows, columns=["observableId", "simulationConditionId", "measurement", "time"]
    ).to_csv(root / "measurements.tsv", sep="\t", index=False)
    (root / "problem.yaml").write_text(
        "format_version: 1\nparameter_file: parameters.tsv\nproblems:\n- condition_files: "
        "[conditions.tsv]\n  measurement_files: [measurements.tsv]\n  observable_files: "
        "[observables.tsv]\n  sbml_files: [model.xml]\n"
    )
    return root / "problem.yaml"


def test_states_and_sensitivities_in_one_loop_equal_forward_mode_ad(tmp_path):
    """Without switching times or events, the expected information computes the states and
    their sensitivities in one Rosenbrock loop (`rosenbrock_sensitivities`); the stage loop
    (unroll=False) differentiates the solve by `jax.jacfwd`. Both are exact derivatives of the
    same discrete solution: they agree to rounding."""
    path = write_smooth_problem(tmp_path / "smooth")
    opts = dict(solver="rodas5p", rtol=1e-10, atol=1e-12)
    one_loop = load_petab(path, **opts)
    by_ad = load_petab(path, unroll=False, **opts)
    x = np.asarray(one_loop.nominal())
    dynamic = one_loop._dynamic_parameters()
    assert dynamic.size == 5  # k1, k2, Km, A0, k3_c2: the scale and σ enter the observables
    assert one_loop._one_loop() and not by_ad._one_loop()
    assert jax.eval_shape(lambda x: one_loop._predict_fn(True)[4](x, dynamic), x) is not None
    assert one_loop.loglike() == pytest.approx(by_ad.loglike(), rel=1e-12)
    F, G = one_loop.fisher_information().matrix, by_ad.fisher_information().matrix
    scale = np.sqrt(np.outer(np.diag(G), np.diag(G)))
    np.testing.assert_allclose(F / scale, G / scale, rtol=0, atol=1e-10)
    g, h = one_loop.gradient(), by_ad.gradient()
    np.testing.assert_allclose(g, h, rtol=1e-9, atol=1e-9 * np.abs(h).max())
    assert "first-ad" not in one_loop._programs
    # Every estimated parameter reaching the dynamics: the same one loop.
    path_all = write_smooth_problem(tmp_path / "all", observable_parameters=False)
    all_loop, all_ad = load_petab(path_all, **opts), load_petab(path_all, unroll=False, **opts)
    assert all_loop._one_loop() and all_loop._dynamic_parameters().size == len(all_loop.nominal())
    F, G = all_loop.fisher_information().matrix, all_ad.fisher_information().matrix
    scale = np.sqrt(np.outer(np.diag(G), np.diag(G)))
    np.testing.assert_allclose(F / scale, G / scale, rtol=0, atol=1e-10)
    # Each program is built once and reused: by both paths, for every later call.
    for p in (one_loop, by_ad):
        assert p._program("first") is p._program("first")
    assert by_ad._program("first-ad") is by_ad._program("first")


def test_one_loop_without_a_symbolic_jacobian_uses_forward_mode_ad(tmp_path, monkeypatch):
    """Where the model's symbolic Jacobian cannot be generated, the one loop differentiates the
    right-hand side by forward-mode AD instead: the same FIM."""
    import fimkit.models.petab as petab_module

    def refuse(*args, **kwargs):
        raise NotImplementedError("no symbolic derivative")

    path = write_smooth_problem(tmp_path / "smooth")
    opts = dict(solver="rodas5p", rtol=1e-10, atol=1e-12)
    symbolic = load_petab(path, **opts)
    assert symbolic._rhs_jacobian() is not None  # generated (once) before the patch
    monkeypatch.setattr(petab_module, "jacobian_definitions", refuse)
    by_ad = load_petab(path, **opts)
    assert by_ad._rhs_jacobian() is None
    F, G = by_ad.fisher_information().matrix, symbolic.fisher_information().matrix
    scale = np.sqrt(np.outer(np.diag(G), np.diag(G)))
    np.testing.assert_allclose(F / scale, G / scale, rtol=0, atol=1e-10)


def test_a_failed_one_loop_solve_is_repeated_by_forward_mode_ad(tmp_path, monkeypatch):
    """The one-loop sensitivities reject steps whose inverse (elimination without pivoting) is
    not accurate; a solve that fails is repeated by `jax.jacfwd` through the solver. With no
    residual accepted every step is rejected, and the FIM is still the right one."""
    from fimkit.models import _rosenbrock

    opts = dict(solver="rodas5p", rtol=1e-10, atol=1e-12)
    for observable_parameters in (True, False):  # False: every parameter reaches the dynamics
        path = write_smooth_problem(
            tmp_path / str(observable_parameters), observable_parameters=observable_parameters
        )
        by_ad = load_petab(path, unroll=False, **opts)
        with monkeypatch.context() as patch:
            patch.setattr(_rosenbrock, "INVERSE_RESIDUAL", -1.0)
            failing = load_petab(path, **opts)
            assert failing._one_loop()
            F = failing.fisher_information().matrix
        G = by_ad.fisher_information().matrix
        assert "first-ad" in failing._programs
        scale = np.sqrt(np.outer(np.diag(G), np.diag(G)))
        np.testing.assert_allclose(F / scale, G / scale, rtol=0, atol=1e-10)


def test_rosenbrock_failure_names_condition_and_time(problem_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = load_petab(problem_path, solver="rodas5p", max_steps=2)
    with pytest.raises(SolverError, match=r"condition 'c2' failed (before|between) t=.*max_steps"):
        p.loglike()


def test_solver_options_are_checked(problem_path):
    with pytest.raises(FimkitError, match="'solver' argument of load_petab must be one of"):
        load_petab(problem_path, solver="rodas9")
    with pytest.raises(FimkitError, match="'unroll' argument of load_petab"):
        load_petab(problem_path, solver="rodas5p", unroll="sometimes")


def test_lint_reports_every_problem_at_once(tmp_path):
    def tweak(root, meas):
        meas.loc[0, "observableId"] = "no_such_observable"
        meas.loc[1, "simulationConditionId"] = "no_such_condition"
        meas.loc[meas.observableId == "obs_C", "measurement"] = -1.0
        meas.loc[meas.observableId == "obs_A", "observableParameters"] = "scale_A;offset_A"
        obs = pd.read_csv(root / "observables.tsv", sep="\t")
        obs.loc[obs.observableId == "obs_tot", "observableFormula"] = "total * unknown_factor"
        obs.to_csv(root / "observables.tsv", sep="\t", index=False)
        par = pd.read_csv(root / "parameters.tsv", sep="\t")
        par.loc[par.parameterId == "k2", "parameterScale"] = "log2"
        par.to_csv(root / "parameters.tsv", sep="\t", index=False)
        cond = pd.read_csv(root / "conditions.tsv", sep="\t")
        cond["not_in_model"] = 1.0
        cond.to_csv(root / "conditions.tsv", sep="\t", index=False)

    path = write_problem(tmp_path / "broken", tweak=tweak)
    issues = lint_petab(path)
    errors = [i.message for i in issues if i.level == "error"]
    expected = [
        "observable 'no_such_observable', which is not in the observable table",
        "simulationConditionId 'no_such_condition' is not in the condition table",
        "Observable 'obs_C' is log-transformed, but 14 of its measurements are <= 0",
        "Observable 'obs_A' has 1 observableParameter placeholder(s), but its measurements give [2]",
        "refers to 'unknown_factor'",
        "Parameter 'k2' has parameterScale 'log2'",
        "column 'not_in_model', which is not an id of the SBML model",
    ]
    for text in expected:
        assert any(text in e for e in errors), (text, errors)
    with pytest.raises(PetabError) as info:
        load_petab(path)
    assert len(info.value.issues) >= len(expected)
    for text in expected:
        assert text in str(info.value)


def test_missing_pandas_says_which_extra(monkeypatch, problem_path):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pip install 'fimkit\[petab\]'"):
        load_petab(problem_path)


def test_with_measurements_rejects_what_is_not_a_measurement_table(problem):
    with pytest.raises(PetabError, match=r"'measurements' argument .* Got 42 \(type int\)"):
        problem.with_measurements(42)
    spaced = problem.measurements.rename(columns={"time": " time"})
    with pytest.raises(PetabError, match=r"whitespace around the name of column .*' time'"):
        problem.with_measurements(spaced)


def test_loading_does_not_import_libpetab(problem_path):
    # fimkit reads the tables and PEtab math itself: `import petab.v1` costs about a second.
    probe = (
        "import sys; from fimkit.models.petab import load_petab; "
        f"load_petab({str(problem_path)!r}); print('petab' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


# -- the benchmark collection ------------------------------------------------------------------------------

needs_benchmark = pytest.mark.skipif(
    not BENCHMARK.is_dir(), reason=f"the PEtab benchmark collection is not at {BENCHMARK}"
)

# Log-likelihoods at the nominal parameters, from ../shared/data/README.md (AMICI, rtol = atol = 1e-8).
REFERENCE = {
    "Boehm_JProteomeRes2014": -138.22199693517703,
    "Crauste_CellSystems2017": -190.96521897435176,
    "Fujita_SciSignal2010": 53.08377736998929,
    "Weber_BMC2015": -296.2017922646865,
    "Zheng_PNAS2012": 278.33353271001477,
}
# Crauste's solution is very sensitive after the effector burst (t = 8): AMICI's value at rtol =
# atol = 1e-8 carries its own integration error. The converged value, from scipy's Radau, DOP853
# and LSODA at rtol 1e-13 (which agree to 1e-13), is this one; PEtab.jl tests Crauste against the
# AMICI value with an absolute tolerance of 1e-2 for the same reason.
CRAUSTE_CONVERGED = -190.963977575745


def benchmark_yaml(name: str) -> Path:
    folder = BENCHMARK / name
    path = folder / f"{name}.yaml"
    return path if path.is_file() else next(folder.glob("*.yaml"))


_PROBLEMS: dict = {}


def benchmark_problem(name: str):
    if name not in _PROBLEMS:
        _PROBLEMS[name] = load_petab(benchmark_yaml(name))
    return _PROBLEMS[name]


@needs_benchmark
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_loglikelihoods(name):
    problem = benchmark_problem(name)
    ll = problem.loglike()
    if name == "Crauste_CellSystems2017":
        assert ll == pytest.approx(CRAUSTE_CONVERGED, rel=5e-7)
        assert ll == pytest.approx(REFERENCE[name], rel=1e-5)
    else:
        assert ll == pytest.approx(REFERENCE[name], rel=1e-6)


@needs_benchmark
def test_presets_and_kvaerno5_agree_on_boehm():
    """The preset (Rodas5P, fimkit's own loop) and diffrax's Kvaerno5: two integrators, one FIM."""
    problem = benchmark_problem("Boehm_JProteomeRes2014")
    assert problem.solver_options["solver"] == SOLVER_PRESETS[problem.name]["solver"] == "rodas5p"
    kvaerno = load_petab(benchmark_yaml("Boehm_JProteomeRes2014"), solver="kvaerno5")
    F, G = problem.fisher_information().matrix, kvaerno.fisher_information().matrix
    scale = np.sqrt(np.outer(np.diag(G), np.diag(G)))
    np.testing.assert_allclose(F / scale, G / scale, rtol=0, atol=1e-5)
    assert problem.loglike() == pytest.approx(kvaerno.loglike(), rel=1e-7)


@needs_benchmark
def test_fixed_noise_fim_is_the_gauss_newton_sum():
    """Fujita (noise fixed): the information is Sᵀ diag(1/σ²) S, with S here from central finite
    differences of the simulated observables. (Not Crauste, also with fixed noise: its nominal
    solution lies so close to the finite-time blow-up of the pathogen that a relative change of
    2e-6 in one rate moves late observables by 10 %.)"""
    problem = benchmark_problem("Fujita_SciSignal2010")
    x = problem.nominal()
    F = problem.fisher_information(x)
    # The differences come from a solve at atol = 1e-12: pAkt is ~1e-3, and at the preset's
    # atol = 1e-8 the step sequences of x ± h differ enough to move the differences by up to 7e-4
    # (relative to the diagonal); the FIM itself is within 1.2e-6 of the converged one.
    tight = load_petab(benchmark_yaml("Fujita_SciSignal2010"), atol=1e-12)
    sigma = tight.simulate(x)["sigma"].to_numpy()
    h = 1e-4
    S = np.stack(
        [
            (
                tight.simulate(x + h * e)["simulation"].to_numpy()
                - tight.simulate(x - h * e)["simulation"].to_numpy()
            )
            / (2 * h)
            for e in np.eye(x.size)
        ],
        axis=1,
    )
    gn = S.T @ (S / sigma[:, None] ** 2)
    scale = np.sqrt(np.outer(np.diag(gn), np.diag(gn)))
    # Finite differences of an adaptive solve at rtol 1e-8 carry noise of ~1e-5 here.
    np.testing.assert_allclose(F.matrix / scale, gn / scale, rtol=0, atol=5e-5)


@needs_benchmark
def test_estimated_noise_fim_matches_monte_carlo_on_boehm():
    """Boehm (three σ estimated): the expected information against the covariance of the score
    over data simulated from the model, with the score written from the normal density."""
    problem = benchmark_problem("Boehm_JProteomeRes2014")
    x = problem.nominal()
    F = problem.fisher_information(x)
    Jl, Js = problem.sensitivities(x)
    sim = problem.simulate(x)
    s = sim["sigma"].to_numpy()
    rng = np.random.default_rng(3)
    n = 40_000
    r = s * rng.standard_normal((n, s.size))
    scores = (r / s**2) @ Jl + (-1 / s + r**2 / s**3) @ Js
    mc = scores.T @ scores / n
    se = np.sqrt(np.var(scores[:, :, None] * scores[:, None, :], axis=0) / n)
    assert np.all(np.abs(F.matrix - mc) < 5 * se + 1e-10 * np.abs(F.matrix).max())
    i = problem.names.index("log10(sd_pSTAT5A_rel)")
    gn_ii = np.sum(Js[:, i] ** 2 / s**2)
    assert F.matrix[i, i] == pytest.approx(2 * gn_ii, rel=1e-10)


COLLECTION = sorted(p.name for p in BENCHMARK.iterdir() if p.is_dir()) if BENCHMARK.is_dir() else []
# Problems of the collection that fimkit cannot simulate, and the construct the error must name.
UNSUPPORTED = {
    "Liu_IFACPapersOnLine2025": r"Event '_E0' has the trigger U < 1\.0e-8: only time triggers",
}


@pytest.mark.slow
@needs_benchmark
@pytest.mark.parametrize("name", COLLECTION)
def test_collection_sweep(name, request):
    """Every problem of the collection loads and simulates at its nominal parameters, or fails
    with a message that names the unsupported construct. About 25 minutes on 2 cores (Chen_MSB2009
    alone compiles for 9 minutes): opt-in."""
    _opt_in(request)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name in UNSUPPORTED:
            with pytest.raises(PetabError, match=UNSUPPORTED[name]):
                load_petab(benchmark_yaml(name))
            return
        problem = load_petab(benchmark_yaml(name))
    assert np.isfinite(problem.loglike())


@needs_benchmark
def test_fit_returns_to_the_published_estimate():
    """Boehm's nominal values are the published maximum-likelihood estimate: Fisher scoring from a
    start 0.05 (log10 units) away in every parameter gets back to its log-likelihood, and stops on
    its own criterion (the Newton decrement)."""
    problem = benchmark_problem("Boehm_JProteomeRes2014")
    x0 = problem.nominal() + 0.05
    fit = problem.fit(x0)
    assert fit.success, fit.message
    assert fit.loglike == pytest.approx(problem.loglike(), abs=1e-3)
    assert fit.loglike >= problem.loglike() - 1e-6
    g = problem.gradient(fit.x)
    interior = (fit.x > problem.lower_bounds + 1e-6) & (fit.x < problem.upper_bounds - 1e-6)
    F = problem.fisher_information(fit.x).matrix[np.ix_(interior, interior)]
    assert g[interior] @ np.linalg.solve(F, g[interior]) < 1e-6
