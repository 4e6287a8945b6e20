"""Reference numbers: sloppiness.md, case S1 (Gutenkunst et al., PLoS Comput Biol 3:e189, 2007).

Copied from ``../shared/reference/sloppiness.md`` ("S1. Gutenkunst et al. 2007, Universally sloppy
parameter sensitivities in systems biology models"): eigenvalues of the symmetrised χ² Hessians stored
in ``../shared/data/gutenkunst2007/<folder>/hessian.dat`` (log parameters, SloppyCell). Definitions
from that file: N parameters; n3 / n6 = eigenvalues above 1e-3 / 1e-6 of the largest;
span = log10(λmax / smallest positive λ), rounded to one decimal; "nonpositive" = eigenvalues ≤ 0.

von Dassow 2000 is not in the table (11 of its 49 columns are NaN in the stored file).
"""

# (data folder, N, n3, n6, span in decades, number of eigenvalues <= 0)
S1 = (
    ("Tyson_1991", 9, 3, 8, 9.6, 0),
    ("Zwolak_2005", 11, 7, 10, 10.3, 0),
    ("Goldbeter_1991", 13, 2, 7, 9.2, 1),
    ("Vilar_2002", 15, 4, 12, 8.8, 0),
    ("Edelstein_1996", 17, 5, 10, 22.9, 1),
    ("Kholodenko_2000", 21, 8, 21, 5.2, 0),
    ("Lee_2003", 22, 10, 21, 5.7, 1),
    ("Leloup_1999", 38, 3, 21, 10.0, 0),
    ("Brown_2004", 48, 15, 32, 9.5, 3),
    ("Ueda_2001", 49, 4, 23, 8.7, 1),
    ("Locke_2005", 61, 13, 45, 10.9, 3),
    ("Zak_2003", 97, 38, 66, 14.3, 5),
    ("Curto_1998", 105, 5, 15, 15.4, 36),
    ("Chassagnole_2002", 119, 15, 32, 18.8, 21),
    ("Chen_2004", 131, 12, 83, 11.0, 6),
    ("Sasagawa_2005", 234, 77, 139, 15.0, 17),
)

# The span is printed to one decimal.
SPAN_ATOL = 0.05

# von Dassow 2000: columns that are all NaN in the stored file (to be dropped), from the same file.
VON_DASSOW_NAN_COLUMNS = 11
VON_DASSOW_COLUMNS = 49
