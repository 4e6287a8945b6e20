"""Bad input is refused at the boundary with a `fimkit.errors` exception (a ValueError) whose message
names the argument and the value received; failed solves and singular informations say what to do.

Models are built once per module; most errors are raised before anything is compiled.
"""

from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fimkit as fk
from fimkit.errors import (
    DesignError,
    FimkitError,
    ModelError,
    NoiseError,
    ParameterError,
    SingularFIMError,
    SolverError,
)

RB = fk.examples.rooney_biegler()  # params A, k; output y
ORAL = fk.examples.pk_oral()  # closed form; params ka, CL, V; output C
ODE = fk.examples.pk_oral_ode()  # ODE; states gut, central
BOLUS = fk.examples.pk_bolus()  # (CL, V, D) not identifiable together


def _two_outputs(t, p):
    return [p["A"] * jnp.exp(-p["k"] * t), p["k"] * t]


TWO = fk.AnalyticModel(_two_outputs, params=["A", "k"], outputs=["C", "E"], name="two_outputs")


def _decay(t, y, p):
    return [-p["r"] * y[0]]


def _square(t, y, p):
    return [p["r"] * y[0] ** 2]


def _first(t, y, p):
    return y[0]


def _inverse(t, y, p):
    return 1.0 / y[0]


# y' = r·y² from y(0) = 1 blows up at t = 1/r; max_steps is kept small so the failure is quick.
BLOW_UP = fk.ODEModel(
    _square,
    [1.0],
    _first,
    params=["r"],
    states=["y"],
    outputs=["y"],
    max_steps=2000,
    name="blow_up",
)
# y stays 0, so the observation 1/y is infinite.
INFINITE_OUTPUT = fk.ODEModel(
    _decay, [0.0], _inverse, params=["r"], states=["y"], outputs=["y"], name="infinite_output"
)
FEW_STEPS = fk.ODEModel(
    ODE.model.rhs,
    [0.0, 0.0],
    ODE.model.observe,
    params=["ka", "CL", "V"],
    states=["gut", "central"],
    outputs=["C"],
    max_steps=5,
    name="few_steps",
)


def fim(theta=None, design=None, *, model=None, noise=None, scale="lin"):
    """The Rooney–Biegler information by default; each argument can be replaced by a bad one."""
    return fk.fisher_information(
        RB.model if model is None else model,
        RB.theta if theta is None else theta,
        RB.design if design is None else design,
        noise=RB.noise if noise is None else noise,
        scale=scale,
    )


@pytest.fixture(scope="module")
def F_rb():
    return fim()


@pytest.fixture(scope="module")
def F_singular():
    return fk.fisher_information(
        BOLUS.model, BOLUS.theta, BOLUS.design, noise=BOLUS.noise, scale="log"
    )


def test_every_error_is_a_value_error():
    for cls in (
        DesignError,
        ModelError,
        NoiseError,
        ParameterError,
        SingularFIMError,
        SolverError,
    ):
        assert issubclass(cls, FimkitError)
    assert issubclass(FimkitError, ValueError)
    with pytest.raises(ValueError, match="theta"):
        fim({"A": 1.0})


# -- theta ---------------------------------------------------------------------------------------------


def test_unknown_parameter_name():
    with pytest.raises(ParameterError, match=r"'theta'.*unknown parameter names \['kk'\]") as e:
        fim({"A": 15.0, "k": 0.5, "kk": 1.0})
    assert "['A', 'k']" in str(e.value)  # and what the parameters are


def test_missing_parameter_name():
    with pytest.raises(ParameterError, match=r"'theta'.*missing parameters \['k'\]"):
        fim({"A": 15.0})


def test_missing_noise_parameter_name():
    with pytest.raises(ParameterError, match=r"'theta'.*missing parameters \['sigma'\]"):
        fim(noise=fk.Gaussian(sigma="sigma"))


@pytest.mark.parametrize("theta", [[15.0], [15.0, 0.5, 1.0], np.ones((2, 1))])
def test_theta_of_the_wrong_length(theta):
    shape = re.escape(str(np.asarray(theta).shape))
    with pytest.raises(ParameterError, match=rf"'theta'.*length 2.*Got shape {shape}"):
        fim(theta)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_theta(bad):
    with pytest.raises(ParameterError, match=rf"'theta'.*finite.*\['k'\].*{bad!r}"):
        fim({"A": 15.0, "k": bad})
    with pytest.raises(ParameterError, match=r"'theta'.*finite.*\['A'\]"):
        fim([bad, 0.5])


@pytest.mark.parametrize("bad", [0.0, -2.0])
def test_non_positive_theta_on_the_log_scale(bad):
    with pytest.raises(ParameterError, match=rf"'theta'.*log scale.*'A': {bad!r}"):
        fim({"A": bad, "k": 0.5}, scale="log")
    # The linear scale accepts it (A = 0 is a legitimate, if uninformative, value).
    fim({"A": bad, "k": 0.5}, scale="lin")


def test_theta_that_is_not_numeric():
    with pytest.raises(ParameterError, match=r"'theta'.*'fast'"):
        fim({"A": 15.0, "k": "fast"})


@pytest.mark.parametrize("scale", ["ln", "LOG", None, 10])
def test_unknown_scale(scale):
    with pytest.raises(
        FimkitError, match=rf"'scale'.*'lin' or 'log'.*Got {re.escape(repr(scale))}"
    ):
        fim(scale=scale)


def test_unknown_scale_in_to_scale(F_rb):
    with pytest.raises(FimkitError, match=r"'scale'.*Got 'log10'"):
        F_rb.to_scale("log10")


# -- designs -------------------------------------------------------------------------------------------


def test_unknown_output_name():
    with pytest.raises(DesignError, match=r"'outputs'.*unknown outputs \['C'\].*\['y'\]"):
        fim(design=fk.Design(times=[1.0, 2.0], outputs=["C"]))


def test_unknown_output_name_in_one_group_of_several():
    design = fk.Design(groups=[fk.Group([1.0]), fk.Group([2.0], outputs=["y", "z"])])
    with pytest.raises(DesignError, match=r"group 1.*unknown outputs \['z'\]"):
        fim(design=design)


@pytest.mark.parametrize("bad", [-1.0, -1e-9, np.inf, np.nan])
def test_negative_or_non_finite_times(bad):
    with pytest.raises(DesignError, match=rf"'times'.*finite times >= 0.*Got \[{bad!r}\]"):
        fk.Design(times=[1.0, bad, 2.0])
    with pytest.raises(DesignError, match=r"'times'"):
        fim(design=[1.0, bad])


@settings(max_examples=25, deadline=None)
@given(
    good=st.lists(st.floats(0.0, 100.0), min_size=0, max_size=4),
    bad=st.floats(max_value=-1e-300) | st.sampled_from([np.inf, -np.inf, np.nan]),
)
def test_any_bad_time_is_named(good, bad):
    with pytest.raises(DesignError, match=re.escape(f"Got [{bad!r}]")):
        fk.Group([*good, bad, *good])


@pytest.mark.parametrize("times", [[], np.zeros((0,)), np.ones((2, 2))])
def test_empty_or_not_one_dimensional_times(times):
    shape = re.escape(str(np.asarray(times).shape))
    with pytest.raises(DesignError, match=rf"'times'.*non-empty 1-D.*Got shape {shape}"):
        fk.Design(times=times)


def test_times_that_are_not_numbers():
    with pytest.raises(DesignError, match=r"'times'.*list of numbers.*'soon'"):
        fk.Design(times=[1.0, "soon"])


@pytest.mark.parametrize("n", [0, -3, 2.5, True, "3"])
def test_group_size_must_be_a_positive_integer(n):
    with pytest.raises(DesignError, match=rf"'n'.*integer >= 1.*Got {re.escape(repr(n))}"):
        fk.Group([1.0, 2.0], n=n)
    with pytest.raises(DesignError, match=r"'n'"):
        fk.Design(times=[1.0], n=n)


def test_design_needs_times_or_groups_not_both():
    with pytest.raises(DesignError, match=r"'times'.*Got neither"):
        fk.Design()
    with pytest.raises(DesignError, match=r"either 'groups' or 'times'"):
        fk.Design(times=[1.0], groups=[fk.Group([2.0])])


def test_bolus_into_a_state_that_does_not_exist():
    design = fk.Design(times=[1.0, 2.0], doses=[fk.Bolus(0.0, 100.0, "liver")])
    with pytest.raises(DesignError, match=r"state 'liver'.*\['gut', 'central'\]"):
        fk.fisher_information(ODE.model, ODE.theta, design, noise=ODE.noise)


def test_dose_amount_naming_an_unknown_parameter():
    design = fk.Design(times=[1.0], doses=[fk.Bolus(0.0, "Dose", "gut")])
    with pytest.raises(DesignError, match=r"amount 'Dose'.*not a parameter"):
        fk.fisher_information(ODE.model, ODE.theta, design, noise=ODE.noise)


def test_doses_given_to_an_analytic_model():
    design = fk.Design(times=[1.0, 2.0], doses=[fk.Bolus(0.0, 100.0, "A")])
    with pytest.raises(DesignError, match=r"doses.*AnalyticModel.*Bolus\(time=0.0, amount=100.0"):
        fim(design=design)


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda: fk.Bolus(-1.0, 100.0, "gut"), r"'time' of Bolus.*Got -1.0"),
        (lambda: fk.Bolus(0.0, np.nan, "gut"), r"'amount' of Bolus.*finite.*Got nan"),
        (lambda: fk.Bolus(0.0, [1.0], "gut"), r"'amount' of Bolus.*number or a parameter name"),
        (lambda: fk.Bolus(0.0, 5.0, ""), r"'state' of Bolus.*Got ''"),
        (lambda: fk.Infusion(0.0, 0.0, "gut", amount=1.0), r"'duration' of Infusion.*Got 0.0"),
        (
            lambda: fk.Infusion(0.0, 1.0, "gut", amount=1.0, rate=2.0),
            r"exactly one of 'amount' and 'rate'.*amount=1.0, rate=2.0",
        ),
    ],
)
def test_bad_doses(make, pattern):
    with pytest.raises(DesignError, match=pattern):
        make()


# -- noise ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0.0, -0.1, np.inf, np.nan])
@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda v: fk.Gaussian(sigma=v), "'sigma' of Gaussian"),
        (lambda v: fk.Proportional(b=v), "'b' of Proportional"),
        (lambda v: fk.Combined(a=v, b=0.1, form="variance"), "'a' of Combined"),
        (lambda v: fk.Combined(a=0.1, b=v, form="sd"), "'b' of Combined"),
    ],
)
def test_noise_parameters_must_be_positive_and_finite(make, argument, bad):
    with pytest.raises(NoiseError, match=rf"{re.escape(argument)}.*> 0.*Got {bad!r}"):
        make(bad)


def test_noise_parameter_that_is_not_a_number():
    with pytest.raises(NoiseError, match=r"'sigma' of Gaussian.*Got \[0.1\]"):
        fk.Gaussian(sigma=[0.1])


def test_a_plain_non_positive_number_as_noise():
    with pytest.raises(NoiseError, match=r"'sigma' of Gaussian.*Got -1.0"):
        fim(noise=-1.0)


def test_noise_is_required():
    with pytest.raises(NoiseError, match=r"'noise'.*Got None"):
        fk.fisher_information(RB.model, RB.theta, RB.design, noise=None)


@pytest.mark.parametrize("form", ["additive", "VARIANCE", None])
def test_combined_with_a_bad_form(form):
    with pytest.raises(NoiseError, match=rf"'form'.*'variance'.*'sd'.*Got {re.escape(repr(form))}"):
        fk.Combined(a=0.1, b=0.1, form=form)


def test_per_output_sigma_missing_an_output():
    with pytest.raises(NoiseError, match=r"'sigma' of Gaussian.*misses outputs \['E'\]"):
        fk.fisher_information(TWO, RB.theta, [1.0, 2.0], noise=fk.Gaussian(sigma={"C": 0.1}))


def test_per_output_sigma_naming_an_unknown_output():
    noise = fk.Gaussian(sigma={"C": 0.1, "E": 0.2, "Q": 0.3})
    with pytest.raises(NoiseError, match=r"'sigma' of Gaussian.*unknown outputs \['Q'\]"):
        fk.fisher_information(TWO, RB.theta, [1.0, 2.0], noise=noise)


def test_proportional_noise_where_the_prediction_is_zero():
    # The oral model's concentration is exactly 0 at the dose time t = 0.
    with pytest.raises(NoiseError, match=r"Proportional\(b=0\.1\).*output 'C' at time 0\b") as e:
        fk.fisher_information(ORAL.model, ORAL.theta, [0.0, 1.0, 2.0], noise=fk.Proportional(b=0.1))
    assert "Combined" in str(e.value)  # the advice


# -- failed ODE solves ---------------------------------------------------------------------------------


def test_ode_solve_that_runs_out_of_steps():
    with pytest.raises(SolverError, match=r"maximum number of steps") as e:
        fk.fisher_information(FEW_STEPS, ODE.theta, ODE.design, noise=ODE.noise)
    message = str(e.value)
    assert "'max_steps': 5" in message
    assert "Increase `max_steps`" in message  # advice
    assert "'ka': 1.2" in message  # and where it failed


def test_ode_whose_solution_blows_up():
    with pytest.raises(SolverError, match=r"blow_up.*failed.*theta=\{'r': 1.0\}"):
        fk.fisher_information(BLOW_UP, {"r": 1.0}, [0.5, 2.0], noise=0.1)


def test_ode_with_an_infinite_output():
    with pytest.raises(SolverError, match=r"not finite.*theta=\{'r': 1.0\}.*division"):
        fk.predict(INFINITE_OUTPUT, {"r": 1.0}, [0.5, 2.0])


def test_ode_model_arguments():
    with pytest.raises(ModelError, match=r"'max_steps'.*Got 0"):
        fk.ODEModel(_decay, [1.0], _first, params=["r"], states=["y"], outputs=["y"], max_steps=0)
    with pytest.raises(ModelError, match=r"'solver'.*Got 'rk4'"):
        fk.ODEModel(_decay, [1.0], _first, params=["r"], states=["y"], outputs=["y"], solver="rk4")
    with pytest.raises(ModelError, match=r"'y0'.*1 finite values.*Got \[1.0, 2.0\]"):
        fk.ODEModel(_decay, [1.0, 2.0], _first, params=["r"], states=["y"], outputs=["y"])


# -- singular informations -----------------------------------------------------------------------------


def test_cov_of_a_singular_fim_names_the_null_direction(F_singular):
    with pytest.raises(SingularFIMError, match=r"rank 2 of 3") as e:
        F_singular.cov()
    message = str(e.value)
    # Scaling CL, V and D together leaves C(t) unchanged: the null direction is (1, 1, 1)/√3.
    assert "0.577·CL + 0.577·V + 0.577·D" in message
    assert "cov(pinv=True)" in message
    null = np.asarray(e.value.null_directions)
    assert null.shape == (3, 1)
    np.testing.assert_allclose(np.abs(null[:, 0]), np.full(3, 1 / np.sqrt(3)), rtol=1e-6, atol=0)
    # Everything built on the inverse refuses as well.
    for call in (F_singular.standard_errors, F_singular.rse, F_singular.conf_int):
        with pytest.raises(SingularFIMError, match=r"CL.*V.*D"):
            call()


def test_pinv_of_a_singular_fim_is_the_pseudo_inverse(F_singular):
    expected = np.linalg.pinv(F_singular.matrix, rcond=1e-10, hermitian=True)
    np.testing.assert_allclose(
        F_singular.cov(pinv=True), expected, rtol=1e-8, atol=1e-12 * np.abs(expected).max()
    )


def test_marginal_with_singular_nuisance_block(F_singular):
    # With D fixed (select), the rest is regular; as a nuisance pair (V, D) is regular too, but
    # the three together are not: the marginal of CL is zero, and its inverse refused.
    M = F_singular.marginal(["CL"])
    np.testing.assert_allclose(M.matrix, 0.0, rtol=0, atol=1e-8 * np.abs(F_singular.matrix).max())
    with pytest.raises(SingularFIMError, match=r"rank 0 of 1.*CL"):
        M.cov()


@pytest.mark.parametrize("rtol", [0, 0.0, 1, 1.0, 1.5, -1e-3, True, "1e-8", np.nan])
def test_rank_tolerance_must_be_in_the_open_unit_interval(F_rb, rtol):
    pattern = rf"'rtol'.*\(0, 1\).*Got {re.escape(repr(rtol))}"
    with pytest.raises(FimkitError, match=pattern):
        F_rb.rank(rtol=rtol)
    with pytest.raises(FimkitError, match=pattern):
        F_rb.null_space(rtol=rtol)
    with pytest.raises(FimkitError, match=pattern):
        F_rb.cov(rtol=rtol)


# -- intervals and the delta method --------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0, 1, 1.0, -0.05, 1.5, np.nan, True, "0.05", None])
def test_wald_intervals_alpha_outside_the_unit_interval(F_rb, alpha):
    pattern = rf"'alpha'.*\(0, 1\).*Got {re.escape(repr(alpha))}"
    with pytest.raises(FimkitError, match=pattern):
        fk.wald_intervals(F_rb, alpha=alpha)
    with pytest.raises(FimkitError, match=pattern):
        F_rb.conf_int(alpha)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -1.0, 2])
def test_delta_method_alpha_outside_the_unit_interval(F_rb, alpha):
    with pytest.raises(FimkitError, match=rf"'alpha'.*Got {re.escape(repr(alpha))}"):
        fk.delta_method(lambda p: p["A"] * p["k"], RB.theta, F_rb, alpha=alpha)


def test_delta_method_bad_arguments(F_rb):
    with pytest.raises(FimkitError, match=r"'g'.*callable.*Got 3"):
        fk.delta_method(3, RB.theta, F_rb)
    with pytest.raises(FimkitError, match=r"'cov'.*\(2, 2\).*Got shape \(3, 3\)"):
        fk.delta_method(lambda p: p["A"], RB.theta, np.eye(3))
    with pytest.raises(ParameterError, match=r"names"):
        fk.delta_method(lambda p: p["A"], [15.0, 0.5], np.eye(2))


def test_wald_intervals_need_a_fisher_information():
    with pytest.raises(FimkitError, match=r"(?s)'fim'.*FisherInformation.*ndarray"):
        fk.wald_intervals(np.eye(2))


# -- combining and slicing informations ----------------------------------------------------------------


def test_adding_informations_about_different_parameters(F_rb):
    other = fim({**RB.theta, "sigma": 0.1}, noise=fk.Gaussian(sigma="sigma"))
    with pytest.raises(ParameterError, match=r"same parameters.*\['A', 'k'\].*'sigma'"):
        F_rb + other


def test_adding_informations_at_different_parameter_values(F_rb):
    other = fim({"A": 15.0, "k": 0.6})
    with pytest.raises(ParameterError, match=r"same parameter values.*0\.5.*0\.6"):
        F_rb + other


def test_adding_something_else(F_rb):
    with pytest.raises(TypeError):
        F_rb + np.eye(2)


@pytest.mark.parametrize("method", ["marginal", "select"])
@pytest.mark.parametrize("names", [["A", "B"], ["Q"], "kk", []])
def test_marginal_and_select_with_unknown_names(F_rb, method, names):
    shown = re.escape(str([names] if isinstance(names, str) else names))
    with pytest.raises(ParameterError, match=rf"'names'.*\['A', 'k'\].*Got {shown}"):
        getattr(F_rb, method)(names)


def test_marginal_and_select_with_duplicate_names(F_rb):
    with pytest.raises(ParameterError, match=r"duplicate.*\['A', 'A'\]"):
        F_rb.select(["A", "A"])


def test_crlb_of_an_unknown_name(F_rb):
    with pytest.raises(ParameterError, match=r"'name'.*Got \['V'\]"):
        F_rb.crlb("V")


def test_fisher_information_constructor_checks_shapes():
    with pytest.raises(FimkitError, match=r"'matrix'.*square.*\(2\).*Got shape \(2, 3\)"):
        fk.FisherInformation(np.zeros((2, 3)), ["a", "b"], [1.0, 1.0])
    with pytest.raises(FimkitError, match=r"'matrix'.*finite"):
        fk.FisherInformation(np.full((1, 1), np.nan), ["a"], [1.0])
    with pytest.raises(FimkitError, match=r"'theta'.*2 values.*Got 3"):
        fk.FisherInformation(np.eye(2), ["a", "b"], [1.0, 1.0, 1.0])


def test_to_log_scale_needs_positive_parameters():
    F = fk.FisherInformation(np.eye(2), ["a", "b"], [1.0, -2.0])
    with pytest.raises(ParameterError, match=r"log scale.*'b': -2.0"):
        F.to_scale("log")


def test_model_argument_must_be_a_model():
    with pytest.raises(ModelError, match=r"'model'.*Got 'rooney_biegler'"):
        fk.fisher_information("rooney_biegler", RB.theta, RB.design, noise=RB.noise)
