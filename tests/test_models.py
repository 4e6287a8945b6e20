"""Models and sensitivities against closed forms and finite differences."""

import jax.numpy as jnp
import numpy as np
import pytest

import fimkit as fk


def test_oral_absorption_ode_and_closed_form_give_the_same_fim():
    closed, ode = fk.examples.pk_oral(), fk.examples.pk_oral_ode()
    for scale in ("lin", "log"):
        F1 = fk.fisher_information(
            closed.model, closed.theta, closed.design, noise=closed.noise, scale=scale
        )
        F2 = fk.fisher_information(ode.model, ode.theta, ode.design, noise=ode.noise, scale=scale)
        np.testing.assert_allclose(F2.matrix, F1.matrix, rtol=1e-6)


def test_stiff_absorption_with_implicit_solver_matches_closed_form():
    # ka = 500 against k = 0.2: a stiff system (time scales 2e-3 and 5).
    theta = {"ka": 500.0, "CL": 2.0, "V": 10.0}

    def bateman(t, p):
        k = p["CL"] / p["V"]
        return (
            100.0 * p["ka"] / (p["V"] * (p["ka"] - k)) * (jnp.exp(-k * t) - jnp.exp(-p["ka"] * t))
        )

    closed = fk.AnalyticModel(bateman, params=["ka", "CL", "V"], outputs=["C"])
    ode = fk.ODEModel(
        lambda t, y, p: [-p["ka"] * y[0], p["ka"] * y[0] - p["CL"] / p["V"] * y[1]],
        [0.0, 0.0],
        lambda t, y, p: y[1] / p["V"],
        params=["ka", "CL", "V"],
        states=["gut", "central"],
        outputs=["C"],
        solver="kvaerno5",
        rtol=1e-10,
        atol=1e-12,
    )
    times = [0.005, 0.01, 0.5, 2.0, 6.0, 12.0]
    nz = fk.Gaussian(sigma=0.1)
    F1 = fk.fisher_information(closed, theta, times, noise=nz, scale="log")
    F2 = fk.fisher_information(
        ode,
        theta,
        fk.Design(times=times, doses=[fk.Bolus(0.0, 100.0, "gut")]),
        noise=nz,
        scale="log",
    )
    np.testing.assert_allclose(F2.matrix, F1.matrix, rtol=1e-5)


def _one_compartment(**options):
    return fk.ODEModel(
        lambda t, y, p: [-p["CL"] / p["V"] * y[0]],
        [0.0],
        lambda t, y, p: y[0] / p["V"],
        params=["CL", "V"],
        states=["A"],
        outputs=["C"],
        rtol=1e-11,
        atol=1e-13,
        **options,
    )


def test_infusion_and_later_bolus_match_superposition():
    model = _one_compartment()
    p = {"CL": 2.0, "V": 10.0}
    k = p["CL"] / p["V"]
    times = np.array([0.5, 1.0, 2.0, 3.0, 5.0, 6.0, 8.0, 12.0])
    design = fk.Design(
        times=times,
        doses=[fk.Infusion(0.0, 2.0, "A", amount=100.0), fk.Bolus(6.0, 50.0, "A")],
    )
    rate = 50.0
    during = rate / p["CL"] * (1 - np.exp(-k * np.minimum(times, 2.0)))
    after = np.where(times > 2.0, np.exp(-k * (times - 2.0)), 1.0)
    expected = during * after + np.where(
        times >= 6.0, 50.0 / p["V"] * np.exp(-k * (times - 6.0)), 0
    )
    np.testing.assert_allclose(fk.predict(model, p, design)["C"], expected, rtol=1e-8)


def test_observation_at_a_bolus_time_sees_the_dose():
    model = _one_compartment()
    design = fk.Design(
        times=[0.0, 4.0], doses=[fk.Bolus(0.0, 100.0, "A"), fk.Bolus(4.0, 100.0, "A")]
    )
    c = fk.predict(model, {"CL": 2.0, "V": 10.0}, design)["C"]
    np.testing.assert_allclose(c, [10.0, 10.0 + 10.0 * np.exp(-0.8)], rtol=1e-9)


def test_unsorted_and_repeated_times_keep_their_order():
    model = _one_compartment()
    design = fk.Design(times=[8.0, 1.0, 4.0, 1.0], doses=[fk.Bolus(0.0, 100.0, "A")])
    c = fk.predict(model, {"CL": 2.0, "V": 10.0}, design)["C"]
    np.testing.assert_allclose(c, 10.0 * np.exp(-0.2 * np.array([8.0, 1.0, 4.0, 1.0])), rtol=1e-9)


def test_dose_amount_as_parameter_has_exact_sensitivity():
    model = fk.ODEModel(
        lambda t, y, p: [-p["k"] * y[0]],
        [0.0],
        lambda t, y, p: y[0],
        params=["k", "D"],
        states=["A"],
        outputs=["A"],
        rtol=1e-11,
        atol=1e-13,
    )
    t = np.array([1.0, 2.0, 5.0])
    S = fk.sensitivities(
        model, {"k": 0.3, "D": 7.0}, fk.Design(times=t, doses=[fk.Bolus(0.0, "D", "A")])
    )
    np.testing.assert_allclose(S[:, 0], -t * 7.0 * np.exp(-0.3 * t), rtol=1e-8)
    np.testing.assert_allclose(S[:, 1], np.exp(-0.3 * t), rtol=1e-8)


def test_initial_condition_depending_on_parameters():
    model = fk.ODEModel(
        lambda t, y, p: [-p["k"] * y[0]],
        lambda p: [p["y0"]],
        lambda t, y, p: y[0],
        params=["k", "y0"],
        states=["y"],
        outputs=["y"],
        rtol=1e-11,
        atol=1e-13,
    )
    t = np.array([0.5, 1.0, 3.0])
    S = fk.sensitivities(model, {"k": 0.5, "y0": 2.0}, t)
    np.testing.assert_allclose(S[:, 0], -t * 2.0 * np.exp(-0.5 * t), rtol=1e-8)
    np.testing.assert_allclose(S[:, 1], np.exp(-0.5 * t), rtol=1e-8)


def test_two_compartment_example_runs_with_infusion_and_bolus():
    ex = fk.examples.pk_two_compartment()
    F = fk.fisher_information(ex.model, ex.theta, ex.design, noise=ex.noise, scale="log")
    assert F.rank() == 4
    np.testing.assert_allclose(F.matrix, F.matrix.T, rtol=0, atol=0)


@pytest.fixture(scope="module")
def tight_cascade():
    return fk.examples.kinase_cascade(solver="dopri8", rtol=1e-12, atol=1e-14)


def test_cascade_sensitivities_match_central_finite_differences(tight_cascade):
    ex = tight_cascade
    theta = np.array(list(ex.theta.values()))
    S = fk.sensitivities(ex.model, theta, ex.design)
    assert S.shape == (80, 8)  # 40 times × 2 outputs, 8 parameters
    fd = np.empty_like(S)
    for j in range(8):
        # Steps of 1e-4 balance truncation error (h²) against the solver's error (rtol/h).
        h = 1e-4 * theta[j]
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        fd[:, j] = (
            fk.predict(ex.model, up, ex.design).values[0].ravel()
            - fk.predict(ex.model, down, ex.design).values[0].ravel()
        ) / (2 * h)
    np.testing.assert_allclose(S, fd, rtol=1e-5, atol=1e-8 * np.abs(S).max())


def test_selected_outputs_per_group():
    ex = fk.examples.kinase_cascade()
    full = fk.fisher_information(ex.model, ex.theta, ex.design, noise=ex.noise)
    t = ex.design.times
    split = fk.fisher_information(
        ex.model,
        ex.theta,
        fk.Design(groups=[fk.Group(t, outputs=["y1"]), fk.Group(t, outputs=["y2"])]),
        noise=ex.noise,
    )
    np.testing.assert_allclose(split.matrix, full.matrix, rtol=1e-10)


# -- fimkit's own Tsit5 loop (models/_rk.py) against diffrax ------------------------------------
def _cascade_with(solver):
    ex = fk.examples.kinase_cascade()
    m = ex.model
    model = fk.ODEModel(
        m.rhs,
        np.zeros(6),
        m.observe,
        params=m.params,
        states=m.states,
        outputs=m.outputs,
        solver=solver,
    )
    return ex, model


def test_own_tsit5_loop_matches_diffrax_tsit5():
    import diffrax

    ex, own = _cascade_with("tsit5")
    _, ref = _cascade_with(diffrax.Tsit5())
    assert own._own_loop and not ref._own_loop
    F_own = fk.fisher_information(own, ex.theta, ex.design, noise=ex.noise, scale="log").matrix
    F_ref = fk.fisher_information(ref, ex.theta, ex.design, noise=ex.noise, scale="log").matrix
    # Same method, controller and dense output: the two agree far below the solver tolerance.
    np.testing.assert_allclose(F_own, F_ref, rtol=1e-7, atol=1e-9 * np.abs(F_ref).max())


def test_own_tsit5_dense_output_is_the_method():
    from fimkit.models import _rk

    # b_i(1) are the weights of the step, and Σ b_i(θ) = θ (consistency of the interpolant).
    np.testing.assert_allclose(_rk._R.sum(axis=1), _rk._B, atol=1e-14)
    np.testing.assert_allclose(_rk._R.sum(axis=0), [1.0, 0.0, 0.0, 0.0], atol=1e-13)
    np.testing.assert_allclose(_rk._E.sum(), 0.0, atol=1e-14)


def test_own_tsit5_time_derivative_is_the_right_hand_side():
    import jax

    from fimkit.models._rk import tsit5_solve

    def field(t, y, k):
        return jnp.stack([-k * y[0] + jnp.sin(t), y[0] - 0.5 * y[1]])

    ts = jnp.array([0.0, 0.3, 1.7, 2.0, 2.0, 4.5])

    def states(ts):
        ys, _, _ = tsit5_solve(
            field,
            0.0,
            5.0,
            jnp.array([1.0, 0.0]),
            ts,
            0.7,
            rtol=1e-10,
            atol=1e-12,
            max_steps=10_000,
        )
        return ys

    ys, dys = jax.jvp(states, (ts,), (jnp.ones_like(ts),))
    f = jax.vmap(lambda t, y: field(t, y, 0.7))(ts, ys)
    np.testing.assert_allclose(dys, f, rtol=1e-6, atol=1e-8)
    # And the states themselves against a tight scipy solution.
    from scipy.integrate import solve_ivp

    sol = solve_ivp(
        lambda t, y: np.asarray(field(t, y, 0.7)),
        (0, 5),
        [1.0, 0.0],
        t_eval=np.unique(np.asarray(ts)),
        rtol=1e-12,
        atol=1e-14,
        method="DOP853",
    )
    ref = sol.y.T[np.searchsorted(np.unique(np.asarray(ts)), np.asarray(ts))]
    np.testing.assert_allclose(ys, ref, rtol=1e-8, atol=1e-10)


def test_own_tsit5_reports_max_steps_and_blow_up():
    def rhs(t, y, p):
        return [p["a"] * y[0] ** 2]

    def observe(t, y, p):
        return y[0]

    short = fk.ODEModel(rhs, [1.0], observe, params=["a"], states=["y"], max_steps=2)
    with pytest.raises(fk.errors.SolverError, match="max"):
        fk.predict(short, {"a": 0.1}, [1.0, 2.0])
    # y' = y², y(0) = 1 blows up at t = 1.
    blow = fk.ODEModel(rhs, [1.0], observe, params=["a"], states=["y"], max_steps=2000)
    with pytest.raises(fk.errors.SolverError):
        fk.predict(blow, {"a": 1.0}, [0.5, 2.0])


def test_validated_setup_is_reused_per_design_and_noise_and_results_are_unchanged():
    from fimkit.prediction import Setup

    ex = fk.examples.pk_bolus()
    known = {"CL": ex.theta["CL"], "V": ex.theta["V"]}

    def conc(t, p):
        return 100.0 / p["V"] * jnp.exp(-p["CL"] / p["V"] * t)

    model = fk.AnalyticModel(conc, params=["CL", "V"], outputs=["C"])
    design = fk.Design(times=[0.5, 1.0, 2.0, 4.0, 8.0])
    first = Setup.build(model, design, 1.0)
    assert Setup.build(model, design, 1.0) is first
    assert Setup.build(model, design, 2.0) is not first
    # An equal design built anew is a different object: validated again, same information.
    other = fk.Design(times=[0.5, 1.0, 2.0, 4.0, 8.0])
    assert Setup.build(model, other, 1.0) is not first
    # Closed form: C = D/V·exp(−k t), ∂C/∂CL = −t/V·C, ∂C/∂V = C(−1/V + CL t/V²).
    t = np.asarray(design.times)
    CL, V = known["CL"], known["V"]
    c = 100.0 / V * np.exp(-CL / V * t)
    S = np.column_stack([-t / V * c, c * (-1 / V + CL * t / V**2)])
    for sigma, d in ((1.0, design), (2.0, design), (1.0, other), (1.0, design)):
        F = fk.fisher_information(model, known, d, noise=sigma)
        np.testing.assert_allclose(F.matrix, S.T @ S / sigma**2, rtol=1e-10)


def test_integrated_sensitivities_equal_forward_mode_ad_through_the_solve():
    """ODEModel with Tsit5 integrates its forward sensitivities with the state (one augmented
    array); they equal forward-mode AD through the solve of the state alone, with a
    parameter-dependent initial state, a bolus and infusions whose amounts and rates are
    parameters, and parameters in the observation."""
    import jax

    from fimkit.prediction import Setup

    def rhs(t, y, p):
        return [-p["ka"] * y[0], p["ka"] * y[0] - p["CL"] / p["V"] * y[1] + p["kin"] * y[2], -y[2]]

    model = fk.ODEModel(
        rhs,
        lambda p: [0.0, p["A0"], 1.0],
        lambda t, y, p: [y[1] / p["V"], y[0] + y[2]],
        params=["ka", "CL", "V", "kin", "A0", "D", "R"],
        states=["gut", "central", "aux"],
        outputs=["C", "G"],
    )
    assert model._sensitivity_loop
    theta = {"ka": 1.3, "CL": 2.0, "V": 10.0, "kin": 0.4, "A0": 3.0, "D": 100.0, "R": 5.0}
    design = fk.Design(
        times=[0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0],
        doses=[
            fk.Bolus(0.0, "D", "gut"),
            fk.Infusion(1.5, 2.0, "central", rate="R"),
            fk.Infusion(4.0, 1.0, "gut", amount=20.0),
        ],
    )
    setup = Setup.build(model, design, 0.1)
    th = jax.numpy.asarray(setup.theta(theta))
    times = tuple(jax.numpy.asarray(t) for t in setup.times())
    doses = tuple(jax.numpy.asarray(d) for d in setup.dose_values)
    f, F, status = jax.jit(setup.outputs_and_jacobian)(th, times, doses)
    outputs = jax.jit(lambda t: setup.outputs_flat(t, times, doses)[0])
    J = jax.jit(jax.jacfwd(outputs))(th)
    assert np.all(np.asarray(status) == 0)
    np.testing.assert_allclose(f, outputs(th), rtol=1e-14, atol=0)
    np.testing.assert_allclose(F, J, rtol=0, atol=1e-12 * float(np.abs(J).max()))
    # And against central finite differences of the simulated outputs (an independent check).
    h = 1e-6
    fd = np.column_stack(
        [
            (np.asarray(outputs(th * (1 + h * e))) - np.asarray(outputs(th * (1 - h * e))))
            / (2 * h * float(th[j]))
            for j, e in enumerate(np.eye(th.size))
        ]
    )
    np.testing.assert_allclose(F, fd, rtol=0, atol=1e-5 * float(np.abs(J).max()))


def test_dose_given_by_a_noise_parameter_keeps_its_sensitivity():
    """A bolus whose amount is the estimated σ of the noise model: the predictions depend on a
    name beyond the model's parameters, and the FIM must keep that column (closed form)."""
    model = fk.ODEModel(
        lambda t, y, p: [-p["k"] * y[0]],
        [0.0],
        lambda t, y, p: [y[0]],
        params=["k"],
        states=["A"],
        outputs=["C"],
    )
    t = np.array([0.5, 1.0, 2.0, 4.0])
    design = fk.Design(times=t, doses=[fk.Bolus(0.0, "s", "A")])
    k, s = 0.3, 2.0
    F = fk.fisher_information(model, {"k": k, "s": s}, design, noise=fk.Gaussian(sigma="s"))
    # C = s·exp(−k t); Var = s²: ∂C/∂k = −t C, ∂C/∂s = exp(−k t), ∂Var/∂s = 2 s.
    C = s * np.exp(-k * t)
    S = np.column_stack([-t * C, np.exp(-k * t)])
    G = np.column_stack([np.zeros_like(t), np.full_like(t, 2 * s)])
    expected = S.T @ S / s**2 + G.T @ G * 0.5 / s**4
    np.testing.assert_allclose(F.matrix, expected, rtol=1e-6)


def test_derivative_of_the_information_with_respect_to_theta_matches_finite_differences():
    """The FIM's program linearises the predictions around θ; differentiating the information
    itself with respect to θ (as a sensitivity of a design criterion would) must stay exact."""
    import jax

    from fimkit.information.fim import information_terms
    from fimkit.prediction import Setup

    ex = fk.examples.pk_oral_ode()
    noise = fk.Combined(a=0.1, b=0.1, form="variance")
    setup = Setup.build(ex.model, ex.design, noise)
    th = jax.numpy.asarray(setup.theta(ex.theta))
    times = tuple(jax.numpy.asarray(t) for t in setup.times())
    doses = tuple(jax.numpy.asarray(d) for d in setup.dose_values)

    @jax.jit
    def info(th):
        S, G, w_loc, w_disp, *_ = information_terms(setup, th, times, doses)
        return S.T @ (S * w_loc[:, None]) + G.T @ (G * w_disp[:, None])

    dI = np.asarray(jax.jacfwd(info)(th))
    h = 1e-5
    for j in range(th.size):
        step = np.zeros(th.size)
        step[j] = h * float(th[j])
        fd = (np.asarray(info(th + step)) - np.asarray(info(th - step))) / (2 * step[j])
        np.testing.assert_allclose(dI[..., j], fd, rtol=1e-4, atol=1e-6 * np.abs(fd).max())
