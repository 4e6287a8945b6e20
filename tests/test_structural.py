"""Structural identifiability: the reference cases I1–I9, exactness, and bad input.

Truths, all independent of the modular Taylor-series engine under test:
- the stated answers of ../shared/reference/identifiability.md (tests/results/structural_reference.py);
- the Jacobian of the output derivatives computed with sympy by repeated Lie differentiation, exact
  over the rationals at a random rational point (`lie_jacobian`);
- the numeric Fisher information of the same model through `SymbolicModel.to_ode()` at a random
  generic point with a rich design (`fimkit.identifiability`);
- closed-form arguments (the I9 exchange p5 ↔ p6, the Arrhenius rate).
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import sympy

import fimkit as fk
from fimkit.errors import FimkitError, ModelError
from fimkit.identifiability import NOT_IDENTIFIABLE, identifiability
from fimkit.identifiability.structural import (
    LOCALLY_IDENTIFIABLE,
    StructuralIdentifiability,
    structural_identifiability,
)
from fimkit.models.symbolic import SymbolicModel, ic_name
from tests.results.structural_reference import (
    CASES,
    I9_CONSTANT_UNKNOWN_IC_NONID,
)

SEED = 20261128
FIM_TIMES = np.linspace(0.25, 10.0, 40)


def build(key: str, **changes) -> SymbolicModel:
    c = {**CASES[key], **changes}
    return SymbolicModel(
        rhs=c["rhs"],
        outputs=c["outputs"],
        params=c["params"],
        inputs=c["inputs"],
        ic=c["ic"],
        name=key,
    )


def analyse(key: str, **kw) -> StructuralIdentifiability:
    c = CASES[key]
    return structural_identifiability(
        build(key),
        known_ic=c.get("known_ic"),
        known_params=c.get("known_params"),
        seed=SEED,
        **kw,
    )


@pytest.fixture(scope="module")
def results() -> dict[str, StructuralIdentifiability]:
    return {key: analyse(key) for key in CASES}


# -- independent truths ------------------------------------------------------------------------------
def lie_jacobian(model, names, K, *, inputs=None, known_params=None, known_ic=None, seed=0):
    """Exact Jacobian (sympy, rationals) of the output derivatives 0…K at t0 = 0 with respect to
    `names`, at a random rational point; a generic input is a random polynomial of degree K + 1."""
    rnd = random.Random(seed)
    t = model.symbol("t")
    sub_u = {}
    for u, e in model.input_functions(inputs).items():
        if e is None:
            e = sum(
                sympy.Rational(rnd.randint(1, 50), rnd.randint(1, 50)) * t**j for j in range(K + 2)
            )
        sub_u[model.symbol(u)] = e
    rhs = {s: e.xreplace(sub_u) for s, e in model.rhs.items()}
    hs = [e.xreplace(sub_u) for e in model.output_exprs.values()]
    xs = [model.symbol(s) for s in model.states]
    rows = []
    for _ in range(K + 1):
        rows.extend(hs)
        hs = [
            sympy.diff(h, t)
            + sum(sympy.diff(h, x) * rhs[s] for x, s in zip(xs, model.states, strict=True))
            for h in hs
        ]
    zs = [sympy.Symbol(n) for n in names]
    point = {z: sympy.Rational(rnd.randint(1, 97), rnd.randint(1, 97)) for z in zs}
    sub = {t: 0}
    for x, s in zip(xs, model.states, strict=True):
        e = model.ic[s]
        if known_ic and s in known_ic:
            e = sympy.Rational(rnd.randint(1, 97), rnd.randint(1, 97))
        sub[x] = sympy.Symbol(ic_name(s)) if e is None else e
    for q in known_params or ():
        sub[model.symbol(q)] = sympy.Rational(rnd.randint(1, 97), rnd.randint(1, 97))
    J = sympy.Matrix([[sympy.diff(h.xreplace(sub), z) for z in zs] for h in rows]).xreplace(point)
    return J, point, zs


def gradients(exprs, zs, point) -> sympy.Matrix:
    rows = [[sympy.diff(e, z).xreplace(point) for z in zs] for e in exprs]
    return sympy.Matrix(rows) if rows else sympy.zeros(0, len(zs))


def parse_in(names, text):
    """A reference function as a sympy expression in the symbols named like the unknowns (names
    such as "x1(0)" are replaced before parsing, or sympy would read a function call)."""
    local = {}
    for i, n in enumerate(sorted(names, key=len, reverse=True)):
        text = text.replace(n, f"_z{i}")
        local[f"_z{i}"] = sympy.Symbol(n)
    return sympy.sympify(text, locals=local)


# -- the reference verdicts ---------------------------------------------------------------------------
REFERENCE_KEYS = [k for k, c in CASES.items() if c["nonid"] is not None]


@pytest.mark.parametrize("key", REFERENCE_KEYS)
def test_reference_verdicts(results, key):
    c, r = CASES[key], results[key]
    params_nonid = sorted(n for n, v in r.parameters.items() if v == NOT_IDENTIFIABLE)
    assert params_nonid == sorted(n for n in c["nonid"] if n in c["params"])
    for n in c["nonid"]:
        assert r.verdicts[n] == NOT_IDENTIFIABLE, n
    for n in c["identifiable"]:
        assert r.verdicts[n] == LOCALLY_IDENTIFIABLE, n
    assert r.certified
    assert r.error_bound < 1e-12


def test_i9_constant_input_locally_identifiable_but_p5_p6_exchangeable(results):
    """The reference's "not identifiable" for a constant input: with x(0) = (1, 0) known every
    parameter is locally identifiable; p5 ↔ p6 (p3, p4 adjusted) gives the same output, so none is
    globally identifiable. Truth: the Laplace transform (structural_reference.I9_CONSTANT_NOTE) and
    simulation of both parameter sets."""
    r = results["I9_constant"]
    assert r.nonidentifiable == []
    assert r.rank == 4
    ode = build("I9_constant").to_ode(rtol=1e-11, atol=1e-13)
    p3, p4, p5, p6 = 1.0, 2.0, 0.5, 1.5
    swapped = {"p3": p3 * p5 / p6, "p4": p3 + p4 + p5 - p3 * p5 / p6 - p6, "p5": p6, "p6": p5}
    a = fk.predict(ode, {"p3": p3, "p4": p4, "p5": p5, "p6": p6}, FIM_TIMES)["y"]
    b = fk.predict(ode, swapped, FIM_TIMES)["y"]
    np.testing.assert_allclose(b, a, rtol=1e-8, atol=1e-12)


def test_i9_constant_input_with_unknown_ic_is_not_identifiable():
    """STRIKE-GOLDD's C2M with unknown initial conditions: a constant input leaves p3…p6 and x2(0)
    non-identifiable; a ramp makes everything identifiable."""
    model = build("I9_constant", ic={})
    r = structural_identifiability(model, seed=SEED)
    assert sorted(r.nonidentifiable) == sorted(I9_CONSTANT_UNKNOWN_IC_NONID)
    assert r.identifiable == ["x1(0)"]
    ramp = structural_identifiability(model, inputs={"u": "t"}, seed=SEED)
    assert ramp.nonidentifiable == []


# -- exact Jacobian by sympy: rank, null-space support, combinations as fields ------------------------
SYMPY_KEYS = ["I1", "I1_D_known", "I2", "I3", "I4", "I7", "I8", "I9_constant", "I9_ramp"]


@pytest.mark.parametrize("key", SYMPY_KEYS)
def test_rank_and_combinations_against_exact_lie_jacobian(results, key):
    c, r = CASES[key], results[key]
    model = build(key)
    J, point, zs = lie_jacobian(
        model, r.names, r.orders, known_params=c.get("known_params"), known_ic=c.get("known_ic")
    )
    assert J.rank() == r.rank
    N = sympy.Matrix.hstack(*J.nullspace()) if r.nullity else sympy.zeros(len(zs), 0)
    support = sorted(str(zs[i]) for i in range(len(zs)) if any(N[i, j] != 0 for j in range(N.cols)))
    assert support == sorted(r.nonidentifiable)
    if not r.nullity:
        assert r.combinations == () and r.combinations_complete
        return
    # every combination is invariant along the null directions: its gradient annihilates them
    G = gradients(r.combinations, zs, point)
    assert G * N == sympy.zeros(G.rows, N.cols)
    # with the identifiable unknowns they reach the rank of the Jacobian (generate the field)
    ident = sympy.Matrix([[1 if z.name == n else 0 for z in zs] for n in r.identifiable])
    ours = sympy.Matrix.vstack(ident, G) if ident.rows else G
    assert r.combinations_complete
    assert ours.rank() == r.rank
    # the reference's identifiable functions are functions of ours (Jacobian rank does not grow)
    expected = [parse_in(r.names, f) for f in c["functions"]]
    both = sympy.Matrix.vstack(ours, gradients(expected, zs, point))
    assert both.rank() == ours.rank()


def test_i1_symmetry_scales_cl_v_d(results):
    r = results["I1"]
    lam = sympy.Symbol("lam", positive=True)
    s = {sympy.Symbol(n): lam * sympy.Symbol(n) for n in CASES["I1"]["symmetry"]}
    for c in r.combinations:
        assert sympy.simplify(c.xreplace(s) - c) == 0


def test_goodwin_combinations_invariant_and_generating(results):
    """I6 is too large for the sympy Jacobian; its null directions are the two scalings
    (alpha, x2(0)) and (gamma, x3(0))·…: check invariance under both and the reference field."""
    r = results["I6"]
    assert r.nullity == 2
    a, g, x2, x3, lam, mu = sympy.symbols("alpha gamma x2(0) x3(0) lam mu")
    scaling = {a: lam * a, x2: lam * x2, g: mu * g / lam, x3: mu * x3}
    for c in r.combinations:
        assert sympy.simplify(c.xreplace(scaling) - c) == 0
    assert r.combinations_complete
    zs = [sympy.Symbol(n) for n in r.names]
    rnd = random.Random(1)
    point = {z: sympy.Rational(rnd.randint(1, 97), rnd.randint(1, 97)) for z in zs}
    ident = sympy.Matrix([[1 if z.name == n else 0 for z in zs] for n in r.identifiable])
    ours = sympy.Matrix.vstack(ident, gradients(r.combinations, zs, point))
    assert ours.rank() == r.rank
    expected = [parse_in(r.names, f) for f in CASES["I6"]["functions"]]
    assert sympy.Matrix.vstack(ours, gradients(expected, zs, point)).rank() == r.rank


# -- the numeric Fisher information of the same model (via to_ode) -------------------------------------
# Concrete inputs for the ODE (a generic input is not simulable): rich enough to keep the generic
# answer (for I4 a constant input would leave v non-identifiable, so a sine is used). "through":
# "model" calls identifiability(model, theta, design, noise=...), which also simulates rational
# symmetries; "fim" passes the information only (one compiled program less, for the cases whose
# scaling symmetries would otherwise be simulated too). Full-rank cases are marked slow.
FIM_CASES = {
    "I1": ({}, {}, "fim"),
    "I2": ({}, {}, "model"),
    "I3": ({"u": "1"}, {}, "model"),
    "I4": ({"u": "sin(t)"}, {}, "model"),
    "I5": ({}, {}, "model"),
    "I6": ({}, {}, "fim"),
    # c < 0: the predator decays without prey (no blow-up)
    "I7": ({"u": "1"}, {"c": -1.2}, "fim"),
    "I8": ({}, {"alpha": -1.0}, "model"),  # α < 0: the solution decays instead of blowing up
    "I9_constant": ({}, {}, "model"),
}
FULL_RANK = {"I5", "I8", "I9_constant"}


@pytest.mark.parametrize(
    "key",
    [pytest.param(k, marks=pytest.mark.slow) if k in FULL_RANK else k for k in FIM_CASES],
)
def test_numeric_fim_null_space_matches(key):
    inputs, fixed, through = FIM_CASES[key]
    model = build(key)
    r = structural_identifiability(model, inputs=inputs or None, seed=SEED)
    ode = model.to_ode(inputs=inputs or None, rtol=1e-10, atol=1e-12)
    rng = np.random.default_rng(7)
    theta = {p: float(rng.uniform(0.5, 1.5)) for p in ode.params}
    theta.update(fixed)
    scale = "lin" if any(v <= 0 for v in theta.values()) else "log"
    design, noise = fk.Design(times=FIM_TIMES), fk.Gaussian(sigma=0.01)
    if through == "model":
        num = identifiability(ode, theta, design, noise=noise, scale=scale)
    else:
        num = identifiability(fk.fisher_information(ode, theta, design, noise=noise, scale=scale))
    assert list(ode.params) == list(r.names)
    assert num.rank == r.rank
    assert sorted(num.nonidentifiable) == sorted(r.nonidentifiable)
    assert num.gap_decades is None or num.gap_decades > 5
    # the null space is spanned by directions that leave every combination unchanged
    zs = [sympy.Symbol(n) for n in r.names]
    th = np.array([theta[n] for n in r.names])
    for c in r.combinations:
        grad = np.array([float(sympy.diff(c, z).subs(dict(zip(zs, th, strict=True)))) for z in zs])
        if scale == "log":
            grad = grad * th
        np.testing.assert_allclose(grad @ num.null_space, 0.0, atol=1e-6 * np.linalg.norm(grad))


# -- exactness with exp, sin and time-dependent inputs -------------------------------------------------
def arrhenius(temperature: str) -> SymbolicModel:
    return SymbolicModel(
        rhs={"x": "-k*x*exp(-E/T)", "T": temperature},
        outputs={"y": "x"},
        params=["k", "E"],
        ic={"x": 1, "T": 3},
        name="arrhenius",
    )


def test_exp_of_unknowns_is_exact():
    """Constant temperature: only k·exp(−E/T0) is seen (closed form x = exp(−k·e^(−E/T0)·t)), so
    k and E are not identifiable; a temperature ramp separates them."""
    const = structural_identifiability(arrhenius("0"), seed=SEED)
    assert const.rank == 1 and sorted(const.nonidentifiable) == ["E", "k"]
    ramp = structural_identifiability(arrhenius("1"), seed=SEED)
    assert ramp.rank == 2 and ramp.nonidentifiable == []
    assert ramp.certified


def test_exp_ramp_agrees_with_exact_taylor_jacobian():
    """The same with sympy at 50 digits (exp values are transcendental, the ranks are exact)."""
    for temperature, rank in (("0", 1), ("1", 2)):
        model = arrhenius(temperature)
        r = structural_identifiability(model, seed=SEED)
        J, _, _ = lie_jacobian(model, r.names, r.orders)
        s = np.linalg.svd(np.array(J.evalf(50).tolist(), dtype=float), compute_uv=False)
        assert int(np.sum(s > 1e-10 * s[0])) == rank == r.rank


def test_time_dependent_inputs_exp_and_sin():
    """u = exp(−t)·sin(2t) into a chain: all rate constants identifiable from x2 with zero initial
    state; with u = 0 nothing moves and nothing is identifiable."""
    model = SymbolicModel(
        rhs={"x1": "-k1*x1 + u", "x2": "k2*x1 - k3*x2"},
        outputs={"y": "x2"},
        params=["k1", "k2", "k3"],
        inputs={"u": "exp(-t)*sin(2*t)"},
        ic={"x1": 0, "x2": 0},
    )
    r = structural_identifiability(model, seed=SEED)
    assert r.nonidentifiable == [] and r.certified
    assert r.inputs == {"u": "exp(-t)*sin(2*t)"}
    J, _, _ = lie_jacobian(model, r.names, r.orders)
    assert J.rank() == 3


def test_special_known_values_are_flagged_not_certified():
    """x1' = x2, x2' = θ·x1 from x(0) = 0: the output is identically zero, θ is not identifiable,
    and the zero initial state lowers the generic rank, so the verdict is marked uncertified."""
    model = SymbolicModel(
        rhs={"x1": "x2", "x2": "th*x1"}, outputs={"y": "x1"}, params=["th"], ic={"x1": 0, "x2": 0}
    )
    r = structural_identifiability(model, seed=SEED)
    assert r.nonidentifiable == ["th"]
    assert not r.certified
    assert any("not certified" in n for n in r.notes)
    assert "NOT certified" in str(r.summary())


def test_known_initial_condition_zero_is_certified_when_rank_is_kept():
    """x1' = θ·x2 with x2 ≡ 0: θ has no effect (truth: the output is x1(0)); certified."""
    model = SymbolicModel(
        rhs={"x1": "th*x2", "x2": "0"}, outputs={"y": "x1"}, params=["th"], ic={"x2": 0}
    )
    r = structural_identifiability(model, seed=SEED)
    assert r.verdicts == {"th": NOT_IDENTIFIABLE, "x1(0)": LOCALLY_IDENTIFIABLE}
    assert r.certified
    assert r.combinations == () and r.combinations_complete


def test_known_ic_and_params_options(results):
    r = results["I6_known_x2_x3"]
    assert "x2(0)" not in r.names and "x3(0)" not in r.names
    assert r.known["x2(0)"] == "known (generic value)"
    model = build("I1")
    with_value = structural_identifiability(model, known_params={"D": 100}, seed=SEED)
    assert with_value.names == ("CL", "V") and with_value.nonidentifiable == []
    assert with_value.known == {"D": "100", "A(0)": "100"}
    ic_value = structural_identifiability(build("I2"), known_ic={"x1": 0}, seed=SEED)
    assert ic_value.names == ("a01", "a21", "a12", "x0(0)")


def test_result_reproducible_and_serialisable(results):
    a = analyse("I3")
    b = analyse("I3")
    assert a.primes == b.primes and a.seed == b.seed == SEED
    assert [str(c) for c in a.combinations] == [str(c) for c in b.combinations]
    d = json.loads(json.dumps(a.to_dict()))
    assert d["verdicts"] == a.verdicts and d["rank"] == 5
    text = str(a.summary())
    assert "Identifiable combinations" in text and "k1 + k2" in text
    assert "StructuralIdentifiability(I3: rank 5/6" in repr(a)
    assert a.parameters == {k: NOT_IDENTIFIABLE for k in ("k1", "k2", "k3", "k4")}
    assert a.initial_conditions == {"x1(0)": LOCALLY_IDENTIFIABLE, "x2(0)": NOT_IDENTIFIABLE}
    assert a.nullity == 1 and a.size == 6
    assert set(a.symbols) == set(a.names)


def test_error_bound_grows_with_fewer_trials():
    one = structural_identifiability(build("I2"), trials=1, seed=SEED)
    three = structural_identifiability(build("I2"), trials=3, seed=SEED)
    assert one.nonidentifiable == three.nonidentifiable
    assert three.error_bound < one.error_bound < 1e-6


# -- refusals and bad input --------------------------------------------------------------------------
def one_state(rhs: str, **kw) -> SymbolicModel:
    return SymbolicModel(rhs={"x": rhs}, outputs={"y": "x"}, params=["k", "n"], **kw)


@pytest.mark.parametrize(
    ("rhs", "kw", "match"),
    [
        ("-k*sqrt(x)", {}, r"non-integer power sqrt\(x\)"),
        ("-k*x**n", {}, r"power x\*\*n with a symbolic exponent"),
        ("-k*log(x)", {}, r"function log"),
        ("-k*exp(x) + n*exp(2*x)", {}, r"linearly dependent"),
        ("-k*x + pi", {}, r"constant pi"),
        ("-k*x*u", {"inputs": {"u": "Heaviside(t - 1)"}}, r"piecewise function Heaviside\(t - 1\)"),
        (
            "-k*x*exp(-t) + n",
            {"t0": 1.0},
            r"exp\(-t\) exactly: at t0 its argument is the constant -1",
        ),
        ("-k*x*exp(exp(x)) + n", {}, r"nested function"),
    ],
)
def test_refuses_what_it_cannot_treat_exactly(rhs, kw, match):
    with pytest.raises(ModelError, match=match):
        structural_identifiability(one_state(rhs, **kw), seed=SEED)


def test_singular_known_values_are_reported():
    model = SymbolicModel(
        rhs={"x": "-k*x/w", "w": "0"}, outputs={"y": "x"}, params=["k"], ic={"w": 0}
    )
    with pytest.raises(ModelError, match=r"the denominator w is zero at t0"):
        structural_identifiability(model, seed=SEED)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"trials": 0}, r"'trials' argument .* integer >= 1\. Got 0"),
        ({"trials": 2.5}, r"'trials' argument .* Got 2\.5"),
        ({"time_budget": -1}, r"'time_budget' argument .* Got -1"),
        ({"known_ic": ["x9"]}, r"'known_ic' argument .* unknown state\(s\) \['x9'\]"),
        ({"known_params": {"k9": 1.0}}, r"'known_params' argument .* \['k9'\]"),
        ({"known_params": {"k1": "big"}}, r"must give numbers .* 'big'"),
        ({"known_params": {"k1": float("nan")}}, r"finite numbers\. Got nan"),
        ({"known_ic": 3}, r"list of state names or a dict"),
        ({"inputs": {"w": "1"}}, r"unknown input\(s\) \['w'\]"),
        ({"inputs": {"u": "k1*t"}}, r"undefined symbol\(s\) \['k1'\]"),
    ],
)
def test_bad_arguments(kw, match):
    with pytest.raises(FimkitError, match=match):
        structural_identifiability(build("I3"), **kw)


def test_rejects_a_numeric_model():
    ex = fk.examples.pk_bolus()
    with pytest.raises(FimkitError, match=r"must be a fimkit SymbolicModel .* AnalyticModel"):
        structural_identifiability(ex.model)


def test_nothing_unknown_is_refused():
    model = SymbolicModel(rhs={"x": "-k*x"}, outputs={"y": "x"}, params=["k"], ic={"x": 1})
    with pytest.raises(FimkitError, match="nothing is unknown"):
        structural_identifiability(model, known_params={"k": 2})
