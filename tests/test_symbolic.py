"""SymbolicModel: parsing, validation, and the numeric ODE model it converts to.

Truths: hand-written `ODEModel`s of the same equations, closed-form solutions, and the reference
eigenvalues of ../shared/reference/pk_bolus.md (tests/results/references.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import fimkit as fk
from fimkit.errors import ModelError
from fimkit.models.symbolic import SymbolicModel, ic_name
from tests.results.references import PK_BOLUS_LOG_EIGENVALUES

TIMES = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0])
THETA = {"k1": 0.6, "k2": 0.3, "k3": 0.4, "k4": 0.2, "x2(0)": 2.0}


def two_compartment() -> SymbolicModel:
    return SymbolicModel(
        rhs={"x1": "-(k1 + k2)*x1 + k3*x2 + u", "x2": "k2*x1 - (k3 + k4)*x2"},
        outputs={"y": "x1"},
        params=["k1", "k2", "k3", "k4"],
        inputs={"u": "1"},
        ic={"x1": 0},
        name="two_compartment",
    )


def hand_written() -> fk.ODEModel:
    def rhs(t, x, p):
        return [
            -(p["k1"] + p["k2"]) * x[0] + p["k3"] * x[1] + 1.0,
            p["k2"] * x[0] - (p["k3"] + p["k4"]) * x[1],
        ]

    return fk.ODEModel(
        rhs,
        lambda p: [0.0, p["x2(0)"]],
        lambda t, x, p: x[0],
        params=["k1", "k2", "k3", "k4", "x2(0)"],
        states=["x1", "x2"],
        outputs=["y"],
        name="hand_written",
    )


@pytest.fixture(scope="module")
def pair():
    return two_compartment().to_ode(), hand_written()


# -- the ODE model it converts to -----------------------------------------------------------------------
def test_to_ode_names(pair):
    ode, _ = pair
    assert ode.params == ("k1", "k2", "k3", "k4", "x2(0)")
    assert ode.states == ("x1", "x2") and ode.outputs == ("y",)
    assert ode.name == "two_compartment"


def test_simulates_like_the_hand_written_model(pair):
    ode, ref = pair
    a = fk.predict(ode, THETA, TIMES)["y"]
    b = fk.predict(ref, THETA, TIMES)["y"]
    np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)


def test_fim_matches_the_hand_written_model(pair):
    ode, ref = pair
    design = fk.Design(times=TIMES)
    F1 = fk.fisher_information(ode, THETA, design, noise=fk.Gaussian(sigma=0.1), scale="log")
    F2 = fk.fisher_information(ref, THETA, design, noise=fk.Gaussian(sigma=0.1), scale="log")
    assert F1.names == F2.names
    np.testing.assert_allclose(F1.matrix, F2.matrix, rtol=1e-8, atol=1e-10)


def test_parameter_initial_condition_reproduces_the_pk_bolus_reference():
    """A(0) = D as a parameter expression: the FIM of (CL, V, D) on the log scale has the reference
    eigenvalues of pk_bolus.md (closed form) and one null direction."""
    model = SymbolicModel(
        rhs={"A": "-CL/V*A"}, outputs={"C": "A/V"}, params=["CL", "V", "D"], ic={"A": "D"}
    )
    ode = model.to_ode(rtol=1e-11, atol=1e-12)
    assert ode.params == ("CL", "V", "D")
    theta = {"CL": 2.0, "V": 10.0, "D": 100.0}
    F = fk.fisher_information(ode, theta, TIMES, noise=fk.Gaussian(sigma=1.0), scale="log")
    w = np.linalg.eigvalsh(F.matrix)
    np.testing.assert_allclose(w[1:], PK_BOLUS_LOG_EIGENVALUES, rtol=1e-7)
    assert abs(w[0]) < 1e-10 * w[-1]


def test_time_dependent_input_matches_closed_form():
    """x' = −k·x + u(t), u = Heaviside(t − 1), x(0) = x0: x = x0·e^(−kt) + (1 − e^(−k(t−1)))/k
    for t > 1."""
    model = SymbolicModel(
        rhs={"x": "-k*x + u"},
        outputs={"y": "x"},
        params=["k"],
        inputs={"u": "Heaviside(t - 1)"},
        ic={"x": 2.5},
    )
    ode = model.to_ode(rtol=1e-10, atol=1e-12, max_steps=10_000)
    k, times = 0.7, np.array([0.5, 1.5, 3.0, 6.0])
    exact = 2.5 * np.exp(-k * times) + np.where(times > 1, (1 - np.exp(-k * (times - 1))) / k, 0.0)
    got = fk.predict(ode, {"k": k}, times)["y"]
    np.testing.assert_allclose(got, exact, rtol=1e-7, atol=1e-10)
    # the input can be overridden (here without compiling another model)
    rhs, _ = model.substituted({"u": "0"})
    assert rhs["x"] == -model.symbol("k") * model.symbol("x")


def test_generic_input_cannot_be_simulated():
    model = SymbolicModel(
        rhs={"x": "-k*x + u"}, outputs={"y": "x"}, params=["k"], inputs={"u": None}
    )
    with pytest.raises(ModelError, match=r"input\(s\) \['u'\] .* unspecified .* inputs="):
        model.to_ode()
    with pytest.raises(ModelError, match=r"unknown option\(s\) \['rtl'\]"):
        model.to_ode(inputs={"u": "1"}, rtl=1e-6)
    with pytest.raises(ModelError, match=r"unknown input\(s\) \['v'\]"):
        model.to_ode(inputs={"v": "1"})


# -- parsing ----------------------------------------------------------------------------------------------
def test_names_that_sympy_would_misread_are_symbols():
    """S, E, I, N, beta, gamma are names here, not sympy's singletons, constants or functions."""
    model = SymbolicModel(
        rhs={"S": "-beta*S*I/N", "E": "beta*S*I/N - gamma*E", "I": "gamma*E - 0.5*I"},
        outputs={"y": "I^2"},
        params=["beta", "gamma", "N"],
    )
    beta, S, I, N = (model.symbol(n) for n in ("beta", "S", "I", "N"))
    assert model.rhs["S"] == -beta * S * I / N
    assert model.output_exprs["y"] == I**2
    assert model.unknown_ic == ("S", "E", "I")
    assert model.ic_params == ("S(0)", "E(0)", "I(0)")
    assert model.unknowns == ("beta", "gamma", "N", "S(0)", "E(0)", "I(0)")


def test_sympy_expressions_and_numbers_are_accepted():
    x, k = sympy.symbols("x k", positive=True)  # assumptions differ from the model's symbols
    model = SymbolicModel(
        rhs={"x": -k * x, "z": 0}, outputs={"y": x + sympy.Symbol("z")}, params=["k"]
    )
    assert model.rhs["x"] == -model.symbol("k") * model.symbol("x")
    assert model.rhs["z"] == 0
    assert model.symbol("x(0)") == sympy.Symbol("x(0)")
    assert ic_name("x") == "x(0)"


def test_text_and_immutability():
    model = two_compartment()
    text = str(model)
    assert "dx1/dt = " in text and "u(t) = 1" in text and "x2(0) = unknown" in text
    assert repr(model).startswith("SymbolicModel(two_compartment, states=['x1', 'x2']")
    with pytest.raises(AttributeError, match="immutable"):
        model.name = "other"
    assert model.t0 == 0.0 and model.inputs == ("u",)
    assert model.input_exprs == {"u": sympy.Integer(1)}
    assert model.ic == {"x1": sympy.Integer(0), "x2": None}


# -- validation: every message names what is wrong and the value -------------------------------------------
BASE = {"rhs": {"x": "-k*x"}, "outputs": {"y": "x"}, "params": ["k"]}


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (
            {"rhs": {"x": "-k*x + c"}},
            r"right-hand side of 'x', '-k\*x \+ c', uses undefined symbol\(s\) \['c'\]",
        ),
        ({"outputs": {"y": "x/V"}}, r"output 'y', 'x/V', uses undefined symbol\(s\) \['V'\]"),
        ({"outputs": {"y": "k"}}, r"output 'y' = 'k' depends on no state .* \['x'\]"),
        (
            {"ic": {"x": "x0"}},
            r"initial condition of 'x', 'x0', is neither a number nor .*'x0' is not declared",
        ),
        ({"ic": {"x": "2*x"}}, r"initial condition of 'x', '2\*x', .*'x' is a state"),
        ({"ic": {"x": "t"}}, r"'t' is the time"),
        ({"ic": {"x": float("nan")}}, r"initial condition of 'x' must be finite\. Got nan"),
        ({"ic": {"x": True}}, r"initial condition of 'x' must be a number.* Got True"),
        ({"ic": {"x": [1]}}, r"initial condition of 'x' must be a number.* Got \[1\]"),
        ({"ic": {"z": 1}}, r"names unknown state\(s\) \['z'\]; the states are \['x'\]"),
        ({"params": ["k", "x"]}, r"'x' is used for both states and params"),
        ({"params": ["k", "t"]}, r"'t' is the time; it cannot be one of the params"),
        ({"params": ["k", "x(0)"]}, r"'x\(0\)' is reserved for the unknown initial condition"),
        ({"params": ["k", "k"]}, r"duplicate names \['k'\]"),
        ({"rhs": {"x": "-k*x +"}}, r"right-hand side of 'x', '-k\*x \+', could not be parsed"),
        ({"rhs": {"x": "-k*f(x)"}}, r"calls unknown function\(s\) \['f'\]"),
        ({"rhs": {"x": "-k*x*I"}}, r"undefined symbol\(s\) \['I'\]"),
        ({"rhs": {"x": "-k*x + sqrt(-1)"}}, r"not a finite real expression"),
        ({"rhs": {"x": "-k*x + 1/0"}}, r"not a finite real expression"),
        ({"rhs": {"x": None}}, r"right-hand side of 'x' must be an expression\. Got None"),
        ({"rhs": {"x": [1]}}, r"must be a string, a number or a sympy expression\. Got \[1\]"),
        ({"rhs": {}}, r"'rhs' argument of SymbolicModel must be a non-empty dict"),
        ({"outputs": ["x"]}, r"'outputs' argument .* non-empty dict .* Got \['x'\]"),
        (
            {"inputs": {"u": "k*t"}},
            r"input 'u' \(a known function of t\), 'k\*t', uses undefined symbol\(s\) \['k'\]",
        ),
        ({"inputs": ["u"]}, r"'inputs' argument .* Got \['u'\]"),
        ({"ic": 3}, r"'ic' argument .* Got 3"),
        ({"t0": "soon"}, r"'t0' argument .* number\. Got 'soon'"),
        ({"t0": float("inf")}, r"'t0' argument .* finite\. Got inf"),
        ({"rhs": {"t": "1"}}, r"'t' is the time; it cannot be one of the states"),
    ],
)
def test_bad_definitions_are_refused_with_the_value(changes, match):
    with pytest.raises(ModelError, match=match):
        SymbolicModel(**{**BASE, **changes})


def test_unknown_symbol_lookup():
    with pytest.raises(ModelError, match=r"'q' is not a name of this model"):
        SymbolicModel(**BASE).symbol("q")
