"""Reference numbers the core must reproduce, with their sources.

Copied from the project's reference cases (shared/reference/*.md); the package never reads that folder.
"""

# pk_bolus.md — one-compartment IV bolus C(t) = D/V·exp(−CL/V·t), t = 0.5, 1, 2, 4, 8, 12, σ = 1,
# CL = 2, V = 10, D = 100. Derived in closed form. Tolerance rtol 1e-8 on the nonzero eigenvalues;
# the null eigenvalue below 1e-10 × the largest.
PK_BOLUS_LOG_EIGENVALUES = (37.4902398, 349.504266)
PK_BOLUS_D_KNOWN_EIGENVALUES = (32.1298893, 135.937793)

# rooney_biegler.md — y = A(1 − exp(−k t)), A = 15, k = 0.5, σ = 0.1. Source: Pyomo.DoE tests and
# example, re-derived with exact sensitivities. Tolerance rtol 1e-8.
# A1: one measurement at t = 5, sensitivities scaled by the nominal values (∂y/∂log θ).
ROONEY_A1_FIM = ((18957.7788694, 4238.2716539), (4238.2716539, 947.52379675))
# A2: prior = sum of single-measurement FIMs at t ∈ {1, 2, 3, 4, 5, 7}, plus one new measurement at
# t_new; unscaled sensitivities. log10 of: det, trace(inv), trace, λ_min, cond.
ROONEY_A2_PRIOR_TIMES = (1.0, 2.0, 3.0, 4.0, 5.0, 7.0)
ROONEY_A2 = {
    0.0: (6.583798993, -1.957486508, 4.626312486, 1.958420534, 2.666957925),
    5.0: (6.691228591, -2.026853324, 4.664375267, 2.027857404, 2.635513783),
    10.0: (6.864794837, -2.236425412, 4.628369425, 2.238197553, 2.388399731),
}

# cascade.md — the benchmark kinase cascade, FIM in log parameters with an 8th-order explicit solver
# at rtol 1e-10, atol 1e-12. Tolerance rtol 1e-6 on the diagonal and the six largest eigenvalues.
CASCADE_DIAGONAL = (
    4651.91108,
    818.858377,
    14775.9091,
    5074.10799,
    174795.364,
    132170.448,
    2069452.85,
    1137444.71,
)
CASCADE_EIGENVALUES = (
    1.67394824e-05,
    4.87015764e-02,
    17.1340565,
    3267.42284,
    20486.8675,
    56556.0217,
    3458856.67,
)  # the 7 nonzero ones, ascending; the eighth is ≈ 0
CASCADE_NULL_DIRECTION = (1.0, -2.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # / √6, log k1 … log k8
