"""PEtab problems in fit, identifiability and optimal design of new measurements.

A small PEtab problem written by the tests (A → B → ∅ with first-order rates, two conditions that
set A(0), a log-normal observable of A with fixed noise and a normal observable of B with an
estimated σ) has a closed-form solution: the information of each measurement row is checked
against it. The design of new measurements is checked against an independent recomputation of the
information (the problem with the chosen rows appended), against brute force over every subset of
a small candidate grid, and against the approximate design of the multiplicative algorithm.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fimkit as fk
from fimkit.errors import DesignError, FimkitError, FitError, ParameterError

pytest.importorskip("libsbml")
pytest.importorskip("petab")
pd = pytest.importorskip("pandas")

from fimkit.models.petab import PetabError, load_petab  # noqa: E402

SHARED = Path(
    os.environ.get("FIMKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
BOEHM = SHARED / "petab-benchmark" / "Boehm_JProteomeRes2014"

# -- a PEtab problem with a closed-form solution ----------------------------------------------------

SBML = """<?xml version="1.0" encoding="UTF-8"?>
<sbml xmlns="http://www.sbml.org/sbml/level3/version2/core" level="3" version="2">
  <model id="conversion">
    <listOfCompartments>
      <compartment id="cell" size="1" constant="true"/>
    </listOfCompartments>
    <listOfSpecies>
      <species id="A" compartment="cell" initialConcentration="1" hasOnlySubstanceUnits="false"
               boundaryCondition="false" constant="false"/>
      <species id="B" compartment="cell" initialConcentration="0" hasOnlySubstanceUnits="false"
               boundaryCondition="false" constant="false"/>
    </listOfSpecies>
    <listOfParameters>
      <parameter id="k1" value="0.6" constant="true"/>
      <parameter id="k2" value="0.25" constant="true"/>
    </listOfParameters>
    <listOfReactions>
      <reaction id="R1" reversible="false">
        <listOfReactants>
          <speciesReference species="A" stoichiometry="1" constant="true"/>
        </listOfReactants>
        <listOfProducts>
          <speciesReference species="B" stoichiometry="1" constant="true"/>
        </listOfProducts>
        <kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML">
          <apply><times/><ci>cell</ci><ci>k1</ci><ci>A</ci></apply></math></kineticLaw>
      </reaction>
      <reaction id="R2" reversible="false">
        <listOfReactants>
          <speciesReference species="B" stoichiometry="1" constant="true"/>
        </listOfReactants>
        <kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML">
          <apply><times/><ci>cell</ci><ci>k2</ci><ci>B</ci></apply></math></kineticLaw>
      </reaction>
    </listOfReactions>
  </model>
</sbml>
"""
PARAMETERS = [
    # id, scale, lower, upper, nominal, estimate
    ("k1", "log10", 1e-3, 1e3, 0.6, 1),
    ("k2", "log10", 1e-3, 1e3, 0.25, 1),
    ("sigma_B", "log10", 1e-3, 1e3, 0.05, 1),
]
A0 = {"c1": 1.0, "c2": 2.0}
SIGMA_A = 0.1  # on the log scale (obs_A is log-transformed)
EXISTING = [("c1", "obs_A", t) for t in (0.5, 1.0, 2.0)]
EXISTING += [("c1", "obs_B", t) for t in (0.5, 1.0, 2.0)]
EXISTING += [("c2", "obs_A", t) for t in (1.0, 4.0)]
COLUMNS = [
    "observableId",
    "simulationConditionId",
    "measurement",
    "time",
    "observableParameters",
    "noiseParameters",
]


def observables_lin(cond: str, obs: str, t, k1, k2):
    """The closed-form observables: A = A0 e^(−k1 t), B = A0 k1 (e^(−k1 t) − e^(−k2 t))/(k2 − k1)."""
    a0 = A0[cond]
    if obs == "obs_A":
        return a0 * jnp.exp(-k1 * t)
    return a0 * k1 * (jnp.exp(-k1 * t) - jnp.exp(-k2 * t)) / (k2 - k1)


def row_information_truth(cond: str, obs: str, t: float, x: np.ndarray) -> np.ndarray:
    """The expected information of one row about x = (log10 k1, log10 k2, log10 σ_B), from the
    closed form: ∂μᵀ∂μ/σ² + 2 ∂σᵀ∂σ/σ² with μ the (transformed) observable."""

    def mu_sigma(x):
        k1, k2, s = 10.0 ** x[0], 10.0 ** x[1], 10.0 ** x[2]
        y = observables_lin(cond, obs, t, k1, k2)
        if obs == "obs_A":
            return jnp.log(y), jnp.asarray(SIGMA_A)
        return y, s

    xj = jnp.asarray(x)
    dmu, dsig = jax.jacfwd(mu_sigma)(xj)
    _, sigma = mu_sigma(xj)
    return np.asarray(
        (jnp.outer(dmu, dmu) + 2.0 * jnp.outer(dsig, dsig)) / sigma**2, dtype=np.float64
    )


def _measurements(rows=EXISTING) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    out = []
    for cond, obs, t in rows:
        y = float(observables_lin(cond, obs, t, 0.6, 0.25))
        if obs == "obs_A":
            value, noise = y * np.exp(SIGMA_A * rng.standard_normal()), ""
        else:
            value, noise = y + 0.05 * rng.standard_normal(), "sigma_B"
        out.append((obs, cond, value, t, "", noise))
    return pd.DataFrame(out, columns=COLUMNS)


def write_problem(root: Path, measurements: pd.DataFrame | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.xml").write_text(SBML)
    pd.DataFrame(
        PARAMETERS,
        columns=[
            "parameterId",
            "parameterScale",
            "lowerBound",
            "upperBound",
            "nominalValue",
            "estimate",
        ],
    ).to_csv(root / "parameters.tsv", sep="\t", index=False)
    pd.DataFrame({"conditionId": list(A0), "A": list(A0.values())}).to_csv(
        root / "conditions.tsv", sep="\t", index=False
    )
    pd.DataFrame(
        [
            ("obs_A", "A", str(SIGMA_A), "log", "normal"),
            ("obs_B", "B", "noiseParameter1_obs_B", "lin", "normal"),
        ],
        columns=[
            "observableId",
            "observableFormula",
            "noiseFormula",
            "observableTransformation",
            "noiseDistribution",
        ],
    ).to_csv(root / "observables.tsv", sep="\t", index=False)
    (_measurements() if measurements is None else measurements).to_csv(
        root / "measurements.tsv", sep="\t", index=False
    )
    (root / "problem.yaml").write_text(
        "format_version: 1\nparameter_file: parameters.tsv\nproblems:\n"
        "- condition_files: [conditions.tsv]\n  measurement_files: [measurements.tsv]\n"
        "  observable_files: [observables.tsv]\n  sbml_files: [model.xml]\n"
    )
    return root / "problem.yaml"


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    # Not stiff: the explicit solver compiles faster than the default implicit one.
    path = write_problem(tmp_path_factory.mktemp("petab_design") / "conversion")
    return load_petab(path, solver="tsit5", rtol=1e-10, atol=1e-12)


PAIRS = [("c1", "obs_B"), ("c2", "obs_A"), ("c2", "obs_B")]


@pytest.fixture(scope="module")
def design(problem):
    space = fk.PetabDesignSpace(n=3, pairs=PAIRS, bounds=(0.0, 8.0), n_candidates=17)
    return fk.optimize_design(problem, problem.nominal(), space, "D", n_starts=4)


# -- the information of measurement rows ------------------------------------------------------------


def test_information_per_measurement_matches_the_closed_form(problem):
    x = problem.nominal() + np.array([0.05, -0.1, 0.02])
    E = problem.information_per_measurement(x)
    meas = problem.measurements
    assert E.shape == (len(meas), 3, 3)
    for i, r in meas.iterrows():
        truth = row_information_truth(r["simulationConditionId"], r["observableId"], r["time"], x)
        np.testing.assert_allclose(E[i], truth, rtol=1e-7, atol=1e-9 * np.abs(truth).max())
    np.testing.assert_allclose(
        E.sum(axis=0), problem.fisher_information(x).matrix, rtol=1e-12, atol=0
    )


# -- optimal design of new measurements --------------------------------------------------------------


def test_chosen_rows_carry_the_information_of_a_recomputation(problem, design):
    x = problem.nominal()
    assert design.status == "optimal"
    assert len(design.measurements) == 3
    assert set(design.measurements.columns) >= set(COLUMNS)
    # New rows of obs_B take the noise parameter of the existing obs_B rows.
    b = design.measurements[design.measurements["observableId"] == "obs_B"]
    assert (b["noiseParameters"] == "sigma_B").all()
    after = problem.with_measurements(
        pd.concat([problem.measurements, design.measurements], ignore_index=True)
    ).fisher_information(x)
    scale = np.abs(after.matrix).max()
    np.testing.assert_allclose(design.fim.matrix, after.matrix, rtol=1e-7, atol=1e-9 * scale)
    np.testing.assert_allclose(
        design.initial_fim.matrix,
        problem.fisher_information(x).matrix,
        rtol=1e-7,
        atol=1e-9 * scale,
    )
    # The criterion values are log det of those informations.
    assert design.value == pytest.approx(np.linalg.slogdet(after.matrix)[1], rel=1e-8)
    before = np.linalg.slogdet(problem.fisher_information(x).matrix)[1]
    assert design.initial_value == pytest.approx(before, rel=1e-8)
    assert design.value >= design.initial_value
    assert design.efficiency() == pytest.approx(np.exp((design.value - before) / 3), rel=1e-10)
    # The predictions in the measurement column are the closed-form observables.
    for _, r in design.measurements.iterrows():
        truth = float(
            observables_lin(r["simulationConditionId"], r["observableId"], r["time"], 0.6, 0.25)
        )
        assert r["measurement"] == pytest.approx(truth, rel=1e-7)
    text = str(design.summary())
    assert "efficiency gain" in text and "log10(k2)" in text


@pytest.mark.parametrize(
    ("criterion", "replicates"), [("D", False), ("D", True), ("A", False), ("E", True)]
)
def test_exchange_finds_the_brute_force_optimum(problem, criterion, replicates):
    x = problem.nominal()
    times = [0.5, 2.0, 4.0, 8.0]
    space = fk.PetabDesignSpace(n=3, pairs=PAIRS, candidates=times, replicates=replicates)
    result = fk.optimize_design(problem, x, space, criterion, n_starts=3)
    # Independent: the information of every candidate row from the extended problem.
    rows = [
        (obs, cond, 1.0, t, "", "sigma_B" if obs == "obs_B" else "")
        for cond, obs in PAIRS
        for t in times
    ]
    new = pd.DataFrame(rows, columns=COLUMNS)
    ext = problem.with_measurements(pd.concat([problem.measurements, new], ignore_index=True))
    E = ext.information_per_measurement(x)
    n0 = len(problem.measurements)
    F0, Ec = E[:n0].sum(axis=0), E[n0:]

    def value(F):
        if criterion == "D":
            return np.linalg.slogdet(F)[1]
        if criterion == "A":
            return np.trace(np.linalg.inv(F))
        return np.linalg.eigvalsh(F)[0]

    subsets = (
        itertools.combinations_with_replacement(range(len(rows)), 3)
        if replicates
        else itertools.combinations(range(len(rows)), 3)
    )
    values = {s: value(F0 + Ec[list(s)].sum(axis=0)) for s in subsets}
    best = max(values, key=values.get) if criterion != "A" else min(values, key=values.get)
    assert result.value == pytest.approx(values[best], rel=1e-8)
    chosen = result.candidates["count"].to_numpy()
    assert tuple(np.repeat(np.arange(len(rows)), chosen)) == best


def test_approximate_design_satisfies_the_equivalence_theorem(problem, design):
    x = problem.nominal()
    space = fk.PetabDesignSpace(n=3, pairs=PAIRS, bounds=(0.0, 8.0), n_candidates=17)
    w = fk.optimal_weights(problem, x, space)
    assert w.converged and w.certificate.holds
    assert w.weights.sum() == pytest.approx(1.0, rel=1e-12)
    # The exact design is one of the approximate designs (weights count/n): the optimal weights
    # do at least as well.
    assert w.value >= design.value - 1e-9
    # And its value is log det(F₀ + n Σ w M): recompute from the exact design's candidates table.
    E = problem.with_measurements(
        pd.concat(
            [problem.measurements, design.candidates[COLUMNS].assign(measurement=1.0)],
            ignore_index=True,
        )
    ).information_per_measurement(x)
    n0 = len(problem.measurements)
    F = E[:n0].sum(axis=0) + 3 * np.einsum("c,cij->ij", w.weights, E[n0:])
    assert w.value == pytest.approx(np.linalg.slogdet(F)[1], rel=1e-7)
    with pytest.raises(DesignError, match="PEtab problem"):
        w.to_design(3)


def test_without_the_existing_measurements_too_few_rows_are_infeasible(problem):
    space = fk.PetabDesignSpace(
        n=1, pairs=[("c1", "obs_A")], candidates=[1.0, 2.0], keep_existing=False
    )
    result = fk.optimize_design(problem, None, space, n_starts=1)
    assert result.status == "infeasible"
    assert np.isnan(result.value) and np.isnan(result.initial_value)
    assert result.initial_fim is None
    assert "singular" in result.message


def test_params_and_scale_select_the_information(problem, design):
    x = problem.nominal()
    space = fk.PetabDesignSpace(n=2, pairs=PAIRS, candidates=[1.0, 6.0])
    result = fk.optimize_design(
        problem, x, space, "A", scale="log", params=["k1", "k2"], n_starts=2
    )
    assert result.fim.names == ("k1", "k2")
    assert result.fim.scale == "log"
    full = problem.with_measurements(
        pd.concat([problem.measurements, result.measurements], ignore_index=True)
    ).fisher_information(x, scale="log")
    np.testing.assert_allclose(
        result.fim.matrix, full.matrix[:2, :2], rtol=1e-7, atol=1e-9 * np.abs(full.matrix).max()
    )
    assert result.value == pytest.approx(np.trace(np.linalg.inv(full.matrix[:2, :2])), rel=1e-7)


# -- errors ---------------------------------------------------------------------------------------------


def test_bad_design_spaces_name_the_argument_and_value(problem):
    x = problem.nominal()
    with pytest.raises(DesignError, match=r"'n' argument .* integer >= 1\. Got 0"):
        fk.PetabDesignSpace(n=0)
    with pytest.raises(DesignError, match=r"'bounds' .* non-empty time window .* Got \(5, 5\)"):
        fk.PetabDesignSpace(bounds=(5, 5))
    with pytest.raises(DesignError, match="'pairs'"):
        fk.PetabDesignSpace(pairs=[("c1",)])
    with pytest.raises(DesignError, match="'candidates'"):
        fk.PetabDesignSpace(candidates=[])
    with pytest.raises(PetabError, match=r"condition 'c9'.*conditions are \['c1', 'c2'\]"):
        fk.optimize_design(problem, x, fk.PetabDesignSpace(pairs=[("c9", "obs_A")]))
    with pytest.raises(PetabError, match=r"observable 'obs_Z'.*observables are"):
        fk.optimize_design(problem, x, fk.PetabDesignSpace(pairs=[("c1", "obs_Z")]))
    with pytest.raises(DesignError, match="PetabDesignSpace"):
        fk.optimize_design(problem, x, fk.DesignSpace(n_times=2, bounds=(0, 4)))
    with pytest.raises(FimkitError, match=r"\['noise'\] must not be given"):
        fk.optimize_design(problem, x, fk.PetabDesignSpace(), noise=fk.Gaussian(sigma=1.0))
    with pytest.raises(FimkitError, match="local criteria"):
        fk.optimize_design(
            problem, x, fk.PetabDesignSpace(), fk.ExpectedLogDet({"log10(k1)": [-0.3, -0.2]})
        )
    with pytest.raises(DesignError, match=r"n=9 new measurements without replicates.* only 2"):
        fk.optimize_design(
            problem,
            x,
            fk.PetabDesignSpace(n=9, pairs=[("c1", "obs_A")], candidates=[1, 2], replicates=False),
        )


def test_ambiguous_noise_parameters_must_be_given(problem):
    extra = pd.DataFrame([("obs_B", "c1", 0.4, 3.0, "", "0.2")], columns=COLUMNS)
    two_sigmas = problem.with_measurements(pd.concat([_measurements(), extra], ignore_index=True))
    with pytest.raises(FimkitError, match=r"noiseParameters.*'0\.2', 'sigma_B'.*noise_parameters="):
        fk.optimize_design(two_sigmas, None, fk.PetabDesignSpace(pairs=[("c1", "obs_B")]))
    space = fk.PetabDesignSpace(
        n=2, pairs=[("c1", "obs_B")], candidates=[1.0, 5.0], noise_parameters={"obs_B": "sigma_B"}
    )
    result = fk.optimize_design(two_sigmas, None, space, n_starts=1)
    assert (result.measurements["noiseParameters"] == "sigma_B").all()


# -- fit, identifiability and sloppiness of a PEtab problem --------------------------------------------


def test_fit_dispatches_to_the_problem(problem):
    x0 = problem.nominal() + np.array([0.1, -0.1, 0.1])
    ours = fk.fit(problem, theta0=x0)
    theirs = problem.fit(x0)
    assert isinstance(ours, type(theirs))
    np.testing.assert_allclose(ours.x, theirs.x, rtol=1e-12, atol=1e-12)
    assert ours.loglike == pytest.approx(theirs.loglike, rel=1e-12)
    assert ours.success
    bounds = {"k1": (0.1, 3.0), "log10(k2)": (0.05, 2.0)}
    ours = fk.fit(problem, theta0=x0, bounds=bounds, multistart=2, key=5, max_iter=50)
    theirs = problem.fit(x0, bounds=bounds, n_starts=3, seed=5, max_iter=50)
    np.testing.assert_allclose(ours.x, theirs.x, rtol=1e-12, atol=1e-12)
    assert len(ours.starts) == 3
    assert np.log10(0.1) <= ours.x[0] <= np.log10(3.0)
    with pytest.raises(FitError, match=r"\['noise', 'scale'\] must not be given"):
        fk.fit(problem, noise=fk.Gaussian(sigma=1.0), scale="log")
    with pytest.raises(
        FimkitError, match=r"bounds of 'k1' must have lower < upper.*Got \(3\.0, 1\.0\)"
    ):
        fk.fit(problem, bounds={"k1": (3.0, 1.0)})
    with pytest.raises(FitError, match=r"missing \['data', 'noise', 'theta0'\]"):
        fk.fit(fk.examples.pk_bolus().model)


def test_petab_fit_has_intervals_and_a_summary(problem):
    from scipy import stats

    res = fk.fit(problem, theta0=problem.nominal() + np.array([0.1, -0.1, 0.1]))
    F = problem.fisher_information(res.x).matrix
    se = np.sqrt(np.diag(np.linalg.inv(F)))  # independent: the inverse of the information
    ci = res.conf_int(0.1)
    z = stats.norm.ppf(0.95)
    np.testing.assert_allclose(ci.se, se, rtol=1e-10)
    np.testing.assert_allclose(ci.lower, res.x - z * se, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ci.upper, res.x + z * se, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.cov(), np.linalg.inv(F), rtol=1e-8)
    np.testing.assert_allclose(
        res.cov("observed"), np.linalg.inv(problem.observed_information(res.x).matrix), rtol=1e-8
    )
    text = str(res.summary())
    assert "PEtab scales" in text and all(n in text for n in problem.names)
    with pytest.raises(FimkitError, match="'kind' argument"):
        res.cov("sandwich")


def test_identifiability_and_sloppiness_accept_the_problem(problem):
    x = problem.nominal()
    F = problem.fisher_information(x)
    direct = fk.identifiability(problem, x)
    via = fk.identifiability(F)
    assert direct.fim.names == F.names == problem.names
    np.testing.assert_allclose(direct.fim.matrix, F.matrix, rtol=1e-12, atol=0)
    assert list(direct.nonidentifiable) == list(via.nonidentifiable) == []
    log = fk.identifiability(problem, x, scale="log")
    np.testing.assert_allclose(
        log.fim.matrix, problem.fisher_information(x, scale="log").matrix, rtol=1e-12, atol=0
    )
    s = fk.sloppiness(F)
    np.testing.assert_allclose(
        np.sort(s.eigenvalues)[::-1], np.linalg.eigvalsh(F.matrix)[::-1], rtol=1e-10, atol=0
    )
    # The information on PEtab scales holds log10 values as theta: it does not convert by itself.
    with pytest.raises(ParameterError, match="PEtab scales"):
        F.to_scale("log")
    with pytest.raises(FimkitError, match="'design' and 'noise' must not be given"):
        fk.identifiability(problem, x, noise=fk.Gaussian(sigma=1.0))


# -- a benchmark problem ---------------------------------------------------------------------------------


@pytest.mark.skipif(not BOEHM.is_dir(), reason="the PEtab benchmark collection is not present")
def test_new_measurements_for_boehm():
    problem = load_petab(BOEHM / "Boehm_JProteomeRes2014.yaml")
    x = problem.nominal()
    # At the nominal values k_imp_homo is practically undetermined (its information is below
    # the rank tolerance): estimate the others.
    params = [n for n in problem.names if n != "log10(k_imp_homo)"]
    space = fk.PetabDesignSpace(n=3, candidates=[5, 20, 60, 120, 200])
    result = fk.optimize_design(problem, x, space, params=params, n_starts=2)
    assert result.status == "optimal"
    assert result.value >= result.initial_value
    # Three σ parameters are estimated: new rows of each observable carry its own noise parameter.
    for _, r in result.measurements.iterrows():
        assert r["noiseParameters"] == f"sd_{r['observableId']}"
    after = problem.with_measurements(
        pd.concat([problem.measurements, result.measurements], ignore_index=True)
    ).fisher_information(x)
    keep = [problem.names.index(n) for n in params]
    sub = after.matrix[np.ix_(keep, keep)]
    scale = np.abs(sub).max()
    np.testing.assert_allclose(result.fim.matrix, sub, rtol=1e-5, atol=1e-8 * scale)
