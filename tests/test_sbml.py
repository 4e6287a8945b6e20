"""SBML import: an SBML model written by the tests themselves simulates like the hand-written
ODEModel of the same equations; unsupported constructs fail with the element id and the construct."""

from __future__ import annotations

import sys

import jax.numpy as jnp
import numpy as np
import pytest

import fimkit as fk

libsbml = pytest.importorskip("libsbml")

from fimkit.models.sbml import SBMLError, load_sbml, read_sbml  # noqa: E402

# -- an SBML model covering each supported construct ---------------------------------------------------

PARAMS = {"k1": 0.8, "Km": 2.0, "k2": 0.5, "kdeg": 0.3, "kin": 0.2, "dose": 1.5, "kp": 0.4}


def _math(node, formula: str) -> None:
    ast = libsbml.parseL3Formula(formula)
    assert ast is not None, libsbml.getLastParseL3Error()
    assert node.setMath(ast) == libsbml.LIBSBML_OPERATION_SUCCESS, formula


def build_sbml(
    *,
    event: str = "A + dose",
    event_time: str = "3",
    extra=None,
    level: int = 3,
    version: int = 2,
) -> str:
    """An SBML document (a string) with two compartments, concentration and amount species, a
    boundary species, global and local parameters, a function definition, an assignment rule, a
    rate rule, initial assignments, piecewise, stoichiometry 2 and a time-triggered event.

    Equations (cell = 2, nuc = 0.5; A, C, E concentrations; B an amount; Bnd a boundary species):
      R1: A -> 2 B      v1 = cell * mm(A, k1, Km)          mm(S, V, K) = V S / (K + S)
      R2: B -> C        v2 = k2_local * B * input         k2_local = 0.7 (shadows global k2)
                        input = piecewise(1, time < 2, 0.25)   (assignment rule)
      R3: C ->          v3 = nuc * kdeg * C
      R4: -> A          v4 = cell * kin * Bnd             (Bnd = 3 is not consumed)
      R5: A -> E        v5 = cell * k2 * A                (E starts at E0 = 2 * k2, an initial
                                                           assignment)
      P' = -kp * P + total, P(0) = 1                      (rate rule on a parameter)
      total = A + C                                        (assignment rule)
      event at time 3: A = A + dose
    """
    doc = libsbml.SBMLDocument(level, version)
    m = doc.createModel()
    m.setId("constructs")
    fd = m.createFunctionDefinition()
    fd.setId("mm")
    _math(fd, "lambda(S, V, K, V * S / (K + S))")
    for cid, size in (("cell", 2.0), ("nuc", 0.5)):
        c = m.createCompartment()
        c.setId(cid)
        c.setSize(size)
        c.setConstant(True)
        c.setSpatialDimensions(3)
    for sid, comp, kind, value, hosu, bc in (
        ("A", "cell", "conc", 1.0, False, False),
        ("B", "cell", "amount", 0.5, True, False),
        ("C", "nuc", "amount", 0.2, False, False),  # initial amount 0.2 -> concentration 0.4
        ("Bnd", "cell", "conc", 3.0, False, True),
        ("E", "cell", "conc", 0.0, False, False),
    ):
        s = m.createSpecies()
        s.setId(sid)
        s.setCompartment(comp)
        if kind == "conc":
            s.setInitialConcentration(value)
        else:
            s.setInitialAmount(value)
        s.setHasOnlySubstanceUnits(hosu)
        s.setBoundaryCondition(bc)
        s.setConstant(False)
    for pid, value, const in (
        *((k, v, True) for k, v in PARAMS.items()),
        ("P", 1.0, False),
        ("total", 0.0, False),
        ("input", 0.0, False),
    ):
        p = m.createParameter()
        p.setId(pid)
        p.setValue(value)
        p.setConstant(const)
    ia = m.createInitialAssignment()
    ia.setSymbol("E")
    _math(ia, "2 * k2")
    r = m.createAssignmentRule()
    r.setVariable("total")
    _math(r, "A + C")
    r = m.createAssignmentRule()
    r.setVariable("input")
    _math(r, "piecewise(1, time < 2, 0.25)")
    r = m.createRateRule()
    r.setVariable("P")
    _math(r, "-kp * P + total")

    def reaction(rid, reactants, products, law, local=None):
        rx = m.createReaction()
        rx.setId(rid)
        rx.setReversible(False)
        for sid, st in reactants:
            ref = rx.createReactant()
            ref.setSpecies(sid)
            ref.setStoichiometry(st)
            ref.setConstant(True)
        for sid, st in products:
            ref = rx.createProduct()
            ref.setSpecies(sid)
            ref.setStoichiometry(st)
            ref.setConstant(True)
        kl = rx.createKineticLaw()
        for lid, value in (local or {}).items():
            lp = kl.createLocalParameter()
            lp.setId(lid)
            lp.setValue(value)
        _math(kl, law)

    reaction("R1", [("A", 1)], [("B", 2)], "cell * mm(A, k1, Km)")
    reaction("R2", [("B", 1)], [("C", 1)], "k2 * B * input", local={"k2": 0.7})
    reaction("R3", [("C", 1)], [], "nuc * kdeg * C")
    reaction("R4", [("Bnd", 1)], [("A", 1)], "cell * kin * Bnd")
    reaction("R5", [("A", 1)], [("E", 1)], "cell * k2 * A")
    if event is not None:
        e = m.createEvent()
        e.setId("dosing")
        e.setUseValuesFromTriggerTime(True)
        trig = e.createTrigger()
        trig.setInitialValue(False)
        trig.setPersistent(True)
        _math(trig, f"time >= {event_time}")
        ea = e.createEventAssignment()
        ea.setVariable("A")
        _math(ea, event)
    if extra is not None:
        extra(m)
    return libsbml.writeSBMLToString(doc)


def hand_written(solver: str = "tsit5") -> fk.ODEModel:
    """The same equations written by hand."""
    cell, nuc = 2.0, 0.5

    def rhs(t, y, p):
        A, B, C, Bnd, E, P = y
        inp = jnp.where(t < 2, 1.0, 0.25)
        v1 = cell * p["k1"] * A / (p["Km"] + A)
        v2 = 0.7 * B * inp
        v3 = nuc * p["kdeg"] * C
        v4 = cell * p["kin"] * Bnd
        v5 = cell * p["k2"] * A
        return [
            (-v1 + v4 - v5) / cell,
            2 * v1 - v2,
            (v2 - v3) / nuc,
            0.0,
            v5 / cell,
            -p["kp"] * P + (A + C),
        ]

    return fk.ODEModel(
        rhs,
        lambda p: [1.0, 0.5, 0.2 / nuc, 3.0, 2 * p["k2"], 1.0],
        lambda t, y, p: [y[0], y[1], y[2], y[4], y[5], y[0] + y[2]],
        params=list(PARAMS),
        states=["A", "B", "C", "Bnd", "E", "P"],
        outputs=["A", "B", "C", "E", "P", "total"],
        solver=solver,
        rtol=1e-10,
        atol=1e-12,
    )


TIMES = np.array([0.5, 1.0, 1.999, 2.5, 3.0, 3.5, 5.0, 8.0])


@pytest.fixture(scope="module")
def sbml_text() -> str:
    return build_sbml()


def test_constructs_simulate_like_the_hand_written_model(sbml_text):
    model = load_sbml(
        sbml_text,
        outputs=["A", "B", "C", "E", "P", "total"],
        solver="tsit5",
        rtol=1e-10,
        atol=1e-12,
    )
    assert isinstance(model, fk.ODEModel)
    assert model.states == ("A", "B", "C", "Bnd", "E", "P")
    assert model.params == tuple(PARAMS)
    assert model.nominal == PARAMS
    assert model.doses == (fk.Bolus(3.0, "dose", "A"),)
    design = fk.Design(times=TIMES, doses=model.doses)
    ours = fk.predict(model, PARAMS, design).values[0]
    truth = fk.predict(hand_written(), PARAMS, design).values[0]
    np.testing.assert_allclose(ours, truth, rtol=1e-7, atol=1e-10)
    # The dose is there: A jumps by 1.5 at t = 3.
    before = fk.predict(model, PARAMS, fk.Design(times=TIMES)).values[0]
    assert ours[TIMES == 3.0, 0] - before[TIMES == 3.0, 0] == pytest.approx(1.5, rel=1e-6)


def test_sensitivities_match_the_hand_written_model(sbml_text):
    model = load_sbml(sbml_text, outputs=["A", "C", "E"], solver="tsit5", rtol=1e-10, atol=1e-12)
    hand = hand_written("tsit5")
    design = fk.Design(times=TIMES, doses=model.doses)
    S = fk.sensitivities(model, PARAMS, design)
    S_hand = fk.sensitivities(
        hand, PARAMS, fk.Design(times=TIMES, outputs=["A", "C", "E"], doses=model.doses)
    )
    np.testing.assert_allclose(S, S_hand, rtol=1e-6, atol=1e-9)


def test_read_sbml_structure(sbml_text):
    system = read_sbml(sbml_text)
    assert system.states == ("A", "B", "C", "Bnd", "E", "P")
    assert system.constants["R2.k2"] == 0.7
    assert system.constants["cell"] == 2.0
    assert set(system.rules) == {"total", "input"}
    assert system.species["B"] == ("cell", True)
    assert system.species["A"] == ("cell", False)
    (event,) = system.events
    assert event.id == "dosing" and float(event.time) == 3.0


def test_params_outputs_and_local_parameters(sbml_text):
    model = load_sbml(
        sbml_text,
        params=["k1", "R2.k2", "cell"],
        outputs={"ratio": "A / (A + C)", "logA": "log(A)"},
        solver="tsit5",
        rtol=1e-10,
        atol=1e-12,
    )
    assert model.params == ("k1", "R2.k2", "cell")
    assert model.nominal == {"k1": 0.8, "R2.k2": 0.7, "cell": 2.0}
    pred = fk.predict(model, model.nominal, fk.Design(times=TIMES, doses=model.doses)).values[0]
    truth = fk.predict(hand_written(), PARAMS, fk.Design(times=TIMES, doses=model.doses)).values[0]
    A, C = truth[:, 0], truth[:, 2]
    np.testing.assert_allclose(pred[:, 0], A / (A + C), rtol=1e-7)
    np.testing.assert_allclose(pred[:, 1], np.log(A), rtol=1e-7)


def test_event_that_is_not_a_dose_is_refused_by_load_sbml():
    text = build_sbml(event="0.5 * A")
    with pytest.raises(SBMLError, match=r"Event 'dosing'.*does not map onto a dose"):
        load_sbml(text)
    # read_sbml keeps it (load_petab simulates general time events).
    assert read_sbml(text).events[0].assignments[0][0] == "A"


def _algebraic(m):
    r = m.createAlgebraicRule()
    r.setMetaId("alg1")
    _math(r, "P - total")


def _delay(m):
    r = m.getRule(0)
    _math(r, "delay(A, 1)")


def _state_trigger(m):
    e = m.createEvent()
    e.setId("threshold")
    e.setUseValuesFromTriggerTime(True)
    t = e.createTrigger()
    t.setInitialValue(False)
    t.setPersistent(True)
    _math(t, "A > 2")
    ea = e.createEventAssignment()
    ea.setVariable("A")
    _math(ea, "1")


def _event_delay(m):
    e = m.getEvent(0)
    d = e.createDelay()
    _math(d, "1")


def _fast(m):
    for i in range(m.getNumReactions()):
        m.getReaction(i).setFast(i == 0)


def _unknown(m):
    _math(m.getReaction(2).getKineticLaw(), "nuc * kdeg * C * undefined_thing")


def _rate_of(m):
    _math(m.getRule(0), "rateOf(A)")


def _variable_compartment(m):
    r = m.createRateRule()
    r.setVariable("cell")
    _math(r, "0.1")
    m.getCompartment(0).setConstant(False)


@pytest.mark.parametrize(
    "extra, message",
    [
        (_algebraic, r"Algebraic rule 'alg1'.*not supported"),
        (_delay, r"assignment rule for 'total'.*delay\(\)"),
        (_state_trigger, r"Event 'threshold'.*only time triggers"),
        (_event_delay, r"Event 'dosing' has a delay"),
        (_fast, r"Reaction 'R1' is a fast reaction"),
        (_unknown, r"reaction 'R3'.*'undefined_thing'"),
        (_rate_of, r"rateOf\(\)"),
        (_variable_compartment, r"Compartment 'cell' changes in time"),
    ],
)
def test_unsupported_constructs_name_the_element(extra, message):
    # Fast reactions exist up to SBML Level 3 Version 1.
    text = build_sbml(extra=extra, version=1 if extra is _fast else 2)
    with pytest.raises(SBMLError, match=message):
        read_sbml(text)


def test_missing_file_and_invalid_document(tmp_path):
    with pytest.raises(SBMLError, match="does not exist"):
        read_sbml(tmp_path / "nope.xml")
    with pytest.raises(SBMLError, match="not valid SBML"):
        read_sbml("<sbml><model></sbml>")


def test_unknown_params_are_refused(sbml_text):
    with pytest.raises(SBMLError, match=r"names \['nope'\]"):
        load_sbml(sbml_text, params=["k1", "nope"])


def test_missing_libsbml_says_which_extra(monkeypatch, sbml_text):
    monkeypatch.setitem(sys.modules, "libsbml", None)
    with pytest.raises(ImportError, match=r"pip install 'fimkit\[sbml\]'"):
        read_sbml(sbml_text)


@pytest.mark.parametrize("n", [1, 8, 9, 17, 40])
def test_generated_functions_stack_divide_and_branch_like_sympy(n):
    """Generated code stacks many outputs in blocks, divides through shared reciprocals and
    writes piecewise expressions as nested `where`s: the values are sympy's own."""
    import sympy as sp

    from fimkit.models.sbml import compile_function

    y = sp.symbols(f"y0:{n}", real=True)
    v, t = sp.symbols("v t", real=True)
    flux = sp.Symbol("flux", real=True)
    outputs = [
        (k + 1) * y[k] / v
        - flux / v
        + sp.Piecewise((y[k], t < 1), (2 * y[k], t < 2), (3 * y[k], True))
        for k in range(n)
    ]
    f = compile_function(
        [("vector", list(y)), ("scalar", [v]), ("scalar", [t])],
        outputs,
        {flux: y[0] * y[-1] / v},
        name="probe",
    )
    rng = np.random.default_rng(n)
    values = rng.uniform(0.5, 2.0, n)
    for tv in (0.5, 1.5, 2.5):
        subs = {**dict(zip(y, values, strict=True)), v: 1.7, t: tv}
        subs[flux] = float((y[0] * y[-1] / v).subs(subs))
        expected = [float(e.subs(subs)) for e in outputs]
        got = np.asarray(f(jnp.asarray(values), 1.7, tv))
        np.testing.assert_allclose(got, expected, rtol=1e-14, atol=0)


@pytest.mark.parametrize("n", [3, 11])
def test_jacobian_definitions_match_forward_mode_ad(n):
    """The symbolic Jacobian (chain rule through shared definitions, one partial per definition),
    generated as a matrix of rows, equals forward-mode AD of the generated right-hand side:
    definitions that depend on time, on states through other definitions, divisions and a
    piecewise expression included."""
    import jax
    import sympy as sp

    from fimkit.models.sbml import compile_function, jacobian_definitions

    y = sp.symbols(f"y0:{n}", real=True)
    k, K, t = sp.symbols("k K t", real=True)
    drive, sat, flux = sp.symbols("drive sat flux", real=True)
    defs = {
        drive: 2 * sp.exp(-k * t),
        sat: y[0] / (K + y[0]),
        flux: drive * sat * y[-1] ** 2,
    }
    outputs = [
        -flux + sp.Piecewise((y[i], y[i] < 1), (y[i] ** 2, True)) * (i + 1) - k * y[(i + 1) % n]
        for i in range(n)
    ]
    inputs = [("scalar", [t]), ("vector", list(y)), ("scalar", [k]), ("scalar", [K])]
    f = jax.jit(compile_function(inputs, outputs, defs, name="probe_rhs"))
    extended, rows = jacobian_definitions(outputs, defs, [t, *y])
    flat = [*outputs, *(r[0] for r in rows), *(e for r in rows for e in r[1:])]
    jac = jax.jit(compile_function(inputs, flat, extended, name="probe_jac", rows=n + 2))
    rng = np.random.default_rng(n)
    tv, kv, Kv = 0.7, 0.4, 1.3
    for yv in (jnp.asarray(rng.uniform(0.2, 2.0, n)) for _ in range(3)):
        out = np.asarray(jac(tv, yv, kv, Kv))
        assert out.shape == (n + 2, n)
        np.testing.assert_allclose(out[0], f(tv, yv, kv, Kv), rtol=1e-14, atol=0)
        ft = jax.jacfwd(f, argnums=0)(tv, yv, kv, Kv)
        J = jax.jacfwd(f, argnums=1)(tv, yv, kv, Kv)
        np.testing.assert_allclose(out[1], ft, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(out[2:], J, rtol=1e-13, atol=1e-15)
