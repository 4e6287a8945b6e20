"""Reference answers: structural identifiability, cases I1–I9.

Copied from ``../shared/reference/identifiability.md`` ("Structural identifiability: models with known
answers"), whose sources are the test suites of StructuralIdentifiability.jl (SciML;
``test/bodies/identifiability.jl``, ``identifiable_functions.jl``, ``known_ic.jl``) and STRIKE-GOLDD,
plus one case derived by hand. Conventions of that file: initial conditions unknown unless stated;
"global" = globally identifiable, "local" = locally but not globally identifiable, "non-id" = not
identifiable. Identifiable functions are a generating set of a field: any other generating set of
the same field is an equally correct answer.

A local method (fimkit's `structural_identifiability`) must call every "global" and "local" unknown
locally identifiable and every "non-id" one not identifiable; the identifiable functions below must
be functions of its combinations and identifiable unknowns.

Equations are written as in the reference, with these renamings (the meaning is unchanged):
- I5: the observed parameter N becomes the constant state ``Npop`` (derivative 0) with initial
  condition ``N``, because a fimkit output must depend on a state (y2 = Npop = N).
- I8: the state is ``x``; its unknown initial condition is ``x(0)``.
- Unknown initial conditions are named ``"<state>(0)"``; an input ``u`` marked generic is left
  unspecified (SI.jl's default).
"""

# case → dict(rhs, outputs, params, inputs, ic, and the stated answers)
# "nonid": the non-identifiable unknowns; "local_or_global": the locally identifiable ones stated by
# the reference (initial conditions only where the reference states them); "functions": the
# identifiable functions of the reference (strings in the parameter names).
CASES = {
    "I1": {
        "title": "One-compartment IV bolus, D unknown",
        "rhs": {"A": "-(CL/V)*A"},
        "outputs": {"y": "A/V"},
        "params": ["CL", "V", "D"],
        "ic": {"A": "D"},
        "inputs": {},
        "nonid": ["CL", "V", "D"],
        "identifiable": [],
        "functions": ["D/V", "CL/V"],
        "symmetry": {"CL": 1, "V": 1, "D": 1},  # (CL, V, D) → λ(CL, V, D)
    },
    "I1_D_known": {
        "title": "One-compartment IV bolus, D known",
        "rhs": {"A": "-(CL/V)*A"},
        "outputs": {"y": "A/V"},
        "params": ["CL", "V", "D"],
        "ic": {"A": "D"},
        "inputs": {},
        "known_params": ["D"],
        "nonid": [],
        "identifiable": ["CL", "V"],  # global
        "functions": [],
    },
    "I2": {
        "title": "Two-compartment linear model without input",
        "rhs": {"x0": "-(a01 + a21)*x0 + a12*x1", "x1": "a21*x0 - a12*x1"},
        "outputs": {"y": "x0"},
        "params": ["a01", "a21", "a12"],
        "ic": {},
        "inputs": {},
        "nonid": ["a01", "a21", "a12"],
        "identifiable": [],
        "functions": ["a01*a12", "a01 + a12 + a21"],
    },
    "I3": {
        "title": "Two compartments with input (Bellman & Åström 1970)",
        "rhs": {"x1": "-(k1 + k2)*x1 + k3*x2 + u", "x2": "k2*x1 - (k3 + k4)*x2"},
        "outputs": {"y": "x1"},
        "params": ["k1", "k2", "k3", "k4"],
        "ic": {},
        "inputs": {"u": None},
        "nonid": ["k1", "k2", "k3", "k4"],
        "identifiable": [],
        "functions": ["k1 + k2", "k3 + k4", "k2*k3"],
    },
    "I4": {
        "title": "Two compartments with a volume (Meshkat 2009)",
        "rhs": {"x1": "-(k01 + k21)*x1 + k12*x2 + u", "x2": "k21*x1 - (k02 + k12)*x2"},
        "outputs": {"y": "x1/v"},
        "params": ["k01", "k21", "k12", "k02", "v"],
        "ic": {},
        "inputs": {"u": None},
        "nonid": ["k01", "k21", "k12", "k02"],
        "identifiable": ["v"],
        "functions": ["v", "k02 + k12", "k01 + k21", "k12*k21"],
    },
    "I5": {
        "title": "SEIR",
        "rhs": {
            "S": "-b*S*I/Npop",
            "E": "b*S*I/Npop - nu*E",
            "I": "nu*E - a*I",
            "Npop": "0",
        },
        "outputs": {"y1": "I", "y2": "Npop"},
        "params": ["b", "nu", "a", "N"],
        "ic": {"Npop": "N"},
        "inputs": {},
        "nonid": [],
        # b, N, I(0) global; a, ν, S(0), E(0) local
        "identifiable": ["b", "N", "I(0)", "a", "nu", "S(0)", "E(0)"],
        "functions": ["a*nu", "a + nu", "b", "N"],
    },
    "I6": {
        "title": "Goodwin oscillator",
        "rhs": {
            "x1": "-b*x1 + 1/(c + x4)",
            "x2": "alpha*x1 - beta*x2",
            "x3": "gamma*x2 - delta*x3",
            "x4": "sigma*x4*(gamma*x2 - delta*x3)/x3",
        },
        "outputs": {"y": "x1"},
        "params": ["b", "c", "alpha", "beta", "gamma", "delta", "sigma"],
        "ic": {},
        "inputs": {},
        "nonid": ["alpha", "gamma"],
        "identifiable": ["b", "c", "sigma", "beta", "delta"],
        "functions": ["sigma", "beta + delta", "c", "b", "beta*delta"],
    },
    "I6_known_x2_x3": {
        "title": "Goodwin oscillator with x2(0), x3(0) known",
        "rhs": {
            "x1": "-b*x1 + 1/(c + x4)",
            "x2": "alpha*x1 - beta*x2",
            "x3": "gamma*x2 - delta*x3",
            "x4": "sigma*x4*(gamma*x2 - delta*x3)/x3",
        },
        "outputs": {"y": "x1"},
        "params": ["b", "c", "alpha", "beta", "gamma", "delta", "sigma"],
        "ic": {},
        "inputs": {},
        "known_ic": ["x2", "x3"],
        "nonid": [],
        # "α becomes local and α·γ global" (so γ is local too)
        "identifiable": ["b", "c", "sigma", "beta", "delta", "alpha", "gamma"],
        "functions": ["alpha*gamma"],
    },
    "I7": {
        "title": "Lotka–Volterra with input",
        "rhs": {"x0": "a*x0 - b*x0*x1 + u", "x1": "c*x1 + d*x0*x1"},
        "outputs": {"y": "x0"},
        "params": ["a", "b", "c", "d"],
        "ic": {},
        "inputs": {"u": None},
        "nonid": ["b", "x1(0)"],
        "identifiable": ["a", "c", "d", "x0(0)"],
        "functions": ["b*x1(0)"],
    },
    "I8": {
        "title": "A sign ambiguity",
        "rhs": {"x": "alpha*x^2"},
        "outputs": {"y": "x^2"},
        "params": ["alpha"],
        "ic": {},
        "inputs": {},
        "nonid": [],
        "identifiable": ["alpha"],  # local: its sign is not identifiable
        "functions": ["alpha^2", "x(0)*alpha"],
    },
    "I9_constant": {
        "title": "Input dependence (STRIKE-GOLDD C2M), constant input",
        "rhs": {"x1": "-(p3 + p4)*x1 + p5*x2 + p6*u", "x2": "p4*x1 - p5*x2"},
        "outputs": {"y": "x1"},
        "params": ["p3", "p4", "p5", "p6"],
        "ic": {"x1": 1, "x2": 0},
        "inputs": {"u": "1"},
        # The reference says "not identifiable" without naming the unknowns. See
        # I9_CONSTANT_NOTE: with x(0) = (1, 0) known, a local method finds all four locally
        # identifiable (p5 and p6 can be exchanged: not globally identifiable).
        "nonid": None,
        "identifiable": None,
        "functions": [],
    },
    "I9_ramp": {
        "title": "Input dependence (STRIKE-GOLDD C2M), ramp input u(t) = t",
        "rhs": {"x1": "-(p3 + p4)*x1 + p5*x2 + p6*u", "x2": "p4*x1 - p5*x2"},
        "outputs": {"y": "x1"},
        "params": ["p3", "p4", "p5", "p6"],
        "ic": {"x1": 1, "x2": 0},
        "inputs": {"u": "t"},
        "nonid": [],
        "identifiable": ["p3", "p4", "p5", "p6"],  # structurally identifiable
        "functions": [],
    },
}

# I9 with a constant input: what the reference's "not identifiable" can and cannot mean. With
# x(0) = (1, 0) known and u ≡ 1, y has the Laplace transform (s + p5)(s + p6) / (s·(s² + (p3 + p4 +
# p5)·s + p3·p5)): p5 + p6, p5·p6, p3 + p4 + p5 and p3·p5 are identifiable, a Jacobian of rank 4 in
# (p3, p4, p5, p6), so every parameter is *locally* identifiable, and exchanging p5 ↔ p6 (with p3, p4
# adjusted) leaves y unchanged, so none is *globally* identifiable. STRIKE-GOLDD's own C2M model
# treats the initial conditions as unknown; then the constant input leaves p3, p4, p5, p6 and x2(0)
# not identifiable (rank 5 of 6), which is the reading tested as I9_constant_unknown_ic.
I9_CONSTANT_NOTE = "locally identifiable, not globally: p5 and p6 can be exchanged"
I9_CONSTANT_UNKNOWN_IC_NONID = ["p3", "p4", "p5", "p6", "x2(0)"]
