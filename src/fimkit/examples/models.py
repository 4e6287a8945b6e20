"""The example models: PK (one- and two-compartment), Rooney–Biegler, the kinase cascade."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from ..design import Bolus, Design, Infusion
from ..models.analytic import AnalyticModel
from ..models.base import AbstractModel
from ..models.ode import ODEModel
from ..noise import Gaussian, NoiseModel


@dataclass(frozen=True)
class Example:
    """A ready-to-run example: a model, nominal parameters, a design and a noise model."""

    model: AbstractModel
    theta: dict[str, float]
    design: Design
    noise: NoiseModel
    description: str


PK_TIMES = (0.5, 1.0, 2.0, 4.0, 8.0, 12.0)


def pk_bolus() -> Example:
    """One-compartment IV bolus, C(t) = D/V·exp(−CL/V·t): the classic non-identifiable PK model.

    (CL, V, D) are not identifiable together: scaling all three by the same factor leaves C(t)
    unchanged. Observed at t = 0.5, 1, 2, 4, 8, 12 with additive σ = 1.
    """

    def conc(t, p):
        return p["D"] / p["V"] * jnp.exp(-p["CL"] / p["V"] * t)

    model = AnalyticModel(conc, params=["CL", "V", "D"], outputs=["C"], name="pk_bolus")
    return Example(
        model,
        {"CL": 2.0, "V": 10.0, "D": 100.0},
        Design(times=PK_TIMES),
        Gaussian(sigma=1.0),
        pk_bolus.__doc__.strip().splitlines()[0],
    )


def pk_bolus_ode() -> Example:
    """The one-compartment IV bolus as an ODE: the dose D is a `Bolus` of the design into state A."""

    def rhs(t, y, p):
        return [-p["CL"] / p["V"] * y[0]]

    def observe(t, y, p):
        return y[0] / p["V"]

    model = ODEModel(
        rhs,
        [0.0],
        observe,
        params=["CL", "V", "D"],
        states=["A"],
        outputs=["C"],
        name="pk_bolus_ode",
    )
    return Example(
        model,
        {"CL": 2.0, "V": 10.0, "D": 100.0},
        Design(times=PK_TIMES, doses=[Bolus(0.0, "D", "A")]),
        Gaussian(sigma=1.0),
        pk_bolus_ode.__doc__.strip().splitlines()[0],
    )


ORAL_THETA = {"ka": 1.2, "CL": 2.0, "V": 10.0}
ORAL_DOSE = 100.0
ORAL_TIMES = (0.25, 0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 24.0)


def pk_oral() -> Example:
    """One-compartment oral absorption in closed form (Bateman function), dose 100, F = 1.

    C(t) = D·ka / (V·(ka − k))·(e^{−k t} − e^{−ka t}), k = CL/V.
    """

    def conc(t, p):
        k = p["CL"] / p["V"]
        return (
            ORAL_DOSE
            * p["ka"]
            / (p["V"] * (p["ka"] - k))
            * (jnp.exp(-k * t) - jnp.exp(-p["ka"] * t))
        )

    model = AnalyticModel(conc, params=["ka", "CL", "V"], outputs=["C"], name="pk_oral")
    return Example(
        model,
        dict(ORAL_THETA),
        Design(times=ORAL_TIMES),
        Gaussian(sigma=0.1),
        "One-compartment oral absorption (closed form)",
    )


def pk_oral_ode(solver: str = "tsit5") -> Example:
    """One-compartment oral absorption as an ODE: a bolus into the gut, first-order absorption."""

    def rhs(t, y, p):
        gut, central = y[0], y[1]
        return [-p["ka"] * gut, p["ka"] * gut - p["CL"] / p["V"] * central]

    def observe(t, y, p):
        return y[1] / p["V"]

    model = ODEModel(
        rhs,
        [0.0, 0.0],
        observe,
        params=["ka", "CL", "V"],
        states=["gut", "central"],
        outputs=["C"],
        solver=solver,
        rtol=1e-10,
        atol=1e-12,
        name="pk_oral_ode",
    )
    return Example(
        model,
        dict(ORAL_THETA),
        Design(times=ORAL_TIMES, doses=[Bolus(0.0, ORAL_DOSE, "gut")]),
        Gaussian(sigma=0.1),
        "One-compartment oral absorption (ODE, dose as a bolus into the gut)",
    )


def pk_two_compartment() -> Example:
    """Two-compartment IV model: a 1 h infusion of 500 at t = 0 and a bolus of 250 at 12 h.

    Parameters CL, V1 (central), Q (inter-compartmental clearance), V2 (peripheral).
    """

    def rhs(t, y, p):
        c1, c2 = y[0] / p["V1"], y[1] / p["V2"]
        flow = p["Q"] * (c1 - c2)
        return [-p["CL"] * c1 - flow, flow]

    def observe(t, y, p):
        return y[0] / p["V1"]

    model = ODEModel(
        rhs,
        [0.0, 0.0],
        observe,
        params=["CL", "V1", "Q", "V2"],
        states=["central", "peripheral"],
        outputs=["C"],
        name="pk_two_compartment",
    )
    design = Design(
        times=(0.5, 1.0, 2.0, 4.0, 8.0, 12.5, 14.0, 18.0, 24.0),
        doses=[Infusion(0.0, 1.0, "central", amount=500.0), Bolus(12.0, 250.0, "central")],
    )
    return Example(
        model,
        {"CL": 3.0, "V1": 20.0, "Q": 5.0, "V2": 40.0},
        design,
        Gaussian(sigma=0.2),
        "Two-compartment IV (infusion then bolus)",
    )


def rooney_biegler() -> Example:
    """Rooney–Biegler regression y = A·(1 − e^{−k t}), A = 15, k = 0.5, σ = 0.1 (Pyomo.DoE's example)."""

    def y(t, p):
        return p["A"] * (1 - jnp.exp(-p["k"] * t))

    model = AnalyticModel(y, params=["A", "k"], outputs=["y"], name="rooney_biegler")
    return Example(
        model,
        {"A": 15.0, "k": 0.5},
        Design(times=[1.0, 2.0, 3.0, 4.0, 5.0, 7.0]),
        Gaussian(sigma=0.1),
        "Rooney–Biegler regression",
    )


CASCADE_THETA = {
    "k1": 1.0,
    "k2": 0.5,
    "k3": 2.0,
    "k4": 0.3,
    "k5": 1.5,
    "k6": 0.4,
    "k7": 0.8,
    "k8": 0.2,
}


def kinase_cascade(solver: str = "tsit5", rtol: float = 1e-8, atol: float = 1e-10) -> Example:
    """The benchmark kinase cascade: 6 states, 8 parameters, outputs x3 and x4 at 40 times.

    Sloppy, with one structurally non-identifiable direction (1, −2, −1, 0, …) in log k1…k3.
    """

    def rhs(t, x, p):
        u = 1.0
        return [
            p["k1"] * u * (1 - x[0]) - p["k2"] * x[0],
            p["k3"] * x[0] * (1 - x[1]) - p["k4"] * x[1],
            p["k5"] * x[1] * (1 - x[2]) - p["k6"] * x[2],
            p["k7"] * x[2] - p["k8"] * x[3],
            0.5 * x[3] - 0.3 * x[4],
            0.2 * x[4] - 0.1 * x[5],
        ]

    def observe(t, x, p):
        return [x[2], x[3]]

    model = ODEModel(
        rhs,
        np.zeros(6),
        observe,
        params=list(CASCADE_THETA),
        states=[f"x{i}" for i in range(1, 7)],
        outputs=["y1", "y2"],
        solver=solver,
        rtol=rtol,
        atol=atol,
        name="kinase_cascade",
    )
    return Example(
        model,
        dict(CASCADE_THETA),
        Design(times=np.linspace(0.5, 20, 40)),
        Gaussian(sigma=0.01),
        "Kinase cascade (6 states, 8 parameters)",
    )


__all__ = [
    "Example",
    "kinase_cascade",
    "pk_bolus",
    "pk_bolus_ode",
    "pk_oral",
    "pk_oral_ode",
    "pk_two_compartment",
    "rooney_biegler",
]
