"""Local (numerical) identifiability from a Fisher information: rank, null space, readable answers.

The Fisher information I(θ) of an experiment is singular exactly along the directions of parameter
space that leave every prediction unchanged to first order. Its numerical rank, the null-space basis
and the gap in the spectrum at the rank cut say *which* directions the data cannot see; this module
turns them into what a modeller reads:

- a per-parameter verdict: identifiable, not identifiable (the parameter has weight in the null
  space), or practically non-identifiable (finite, but with a relative standard error above a
  threshold the user sets);
- the null directions as symmetries: on the log scale a null vector with rational ratios is a
  scaling symmetry ("CL, V, D scale together"), on the linear scale a linear relation;
- the identifiable combinations: the monomials (log scale) or linear forms (linear scale) that the
  symmetries leave invariant, as a basis of the integer lattice orthogonal to the null vectors.

Everything here is local: it describes the information at one θ. Rounding a null vector to rational
numbers happens only when the rational vector fits the numerical one to a tolerance derived from the
gap in the spectrum, and the result says so. When a model is given, whether a rational symmetry holds
beyond first order is checked by simulating at transformed parameters.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import FimkitError, describe
from ..information.fim import DEFAULT_RTOL, FisherInformation, fisher_information, format_direction
from ..models.base import AbstractModel
from ..report.tables import Summary, Table, fmt

IDENTIFIABLE = "identifiable"
NOT_IDENTIFIABLE = "not identifiable"
PRACTICALLY_NONIDENTIFIABLE = "practically non-identifiable"
VERDICTS = (IDENTIFIABLE, NOT_IDENTIFIABLE, PRACTICALLY_NONIDENTIFIABLE)

# A relative standard error above this (percent) makes a finite parameter "practically
# non-identifiable" unless the user says otherwise; 50 % is a common cut in pharmacometrics.
DEFAULT_RSE_THRESHOLD = 50.0
# Largest |integer| allowed in the rational form of a null vector (after clearing denominators).
MAX_EXPONENT = 12
# The rounding tolerance is 10 × the estimated accuracy of the null space, kept in this range: below
# it any float64 vector is "exact"; above it the null space is too poorly determined to round.
_ROUND_TOL_MIN, _ROUND_TOL_MAX = 1e-10, 1e-2
# A parameter whose row of the null-space basis is shorter than this is in no null direction;
# never below _NULL_WEIGHT_MIN (float64 noise in eigenvectors), never above _NULL_WEIGHT_MAX.
_NULL_WEIGHT_MIN, _NULL_WEIGHT_MAX = 1e-8, 5e-2
# Finite factors at which a rational scaling symmetry is checked with the model.
_CHECK_FACTORS = (0.5, 2.0)
# Search sizes for small-integer identifiable combinations (candidate vectors enumerated).
_MAX_CANDIDATES = 100_000


# -- validation -----------------------------------------------------------------------------------
def _is_number(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, int | float | np.integer | np.floating)


def check_rtol(rtol: Any, function: str) -> float:
    """The rank tolerance: `DEFAULT_RTOL` for None, else a number in (0, 1)."""
    if rtol is None:
        return DEFAULT_RTOL
    if not _is_number(rtol) or not np.isfinite(rtol) or not 0 < rtol < 1:
        raise FimkitError(
            f"The 'rtol' argument of {function} must be a number in the range (0, 1): eigenvalues "
            f"below rtol × the largest count as zero. Got {describe(rtol)} instead."
        )
    return float(rtol)


def _check_positive(value: Any, argument: str, function: str, *, allow_inf: bool = False) -> float:
    ok = _is_number(value) and value > 0 and (np.isfinite(value) or allow_inf)
    if not ok:
        what = "a number > 0" + (" (inf allowed)" if allow_inf else "")
        raise FimkitError(
            f"The '{argument}' argument of {function} must be {what}. Got {describe(value)} instead."
        )
    return float(value)


# -- the spectrum -----------------------------------------------------------------------------------
def spectrum(matrix: np.ndarray, rtol: float) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Eigenvalues (ascending), eigenvectors, the absolute tolerance and the mask of kept ones.

    The rule is `FisherInformation.rank`'s: eigenvalues above rtol × the largest |eigenvalue| count.
    """
    w, v = np.linalg.eigh(matrix)
    tol = rtol * max(float(np.max(np.abs(w))) if w.size else 0.0, np.finfo(float).tiny)
    return w, v, tol, w > tol


def null_space_accuracy(w: np.ndarray, keep: np.ndarray) -> float:
    """Estimated error (sine of the angle) of the numerical null space, by Davis–Kahan.

    The perturbation that made the null eigenvalues non-zero is at least as large as the largest of
    them, and at least the eigen-solver's roundoff (p·ε·max|λ|); the null space then moves by about
    that size over the gap to the smallest kept eigenvalue.
    """
    if not keep.any():
        return 0.0  # nothing kept: the null space is the whole space, exactly
    p = w.size
    noise = p * np.finfo(float).eps * float(np.max(np.abs(w)))
    if (~keep).any():
        noise = max(noise, float(np.max(np.abs(w[~keep]))))
    return min(1.0, noise / float(np.min(w[keep])))


def _signed_columns(basis: np.ndarray) -> np.ndarray:
    basis = np.array(basis, dtype=float)
    for j in range(basis.shape[1]):
        k = int(np.argmax(np.abs(basis[:, j])))
        basis[:, j] *= np.sign(basis[k, j]) or 1.0
    return basis


# -- rational forms ---------------------------------------------------------------------------------
def _canonical_sign(c: Sequence[int]) -> tuple[int, ...]:
    """The integer vector with its first non-zero entry positive."""
    c = tuple(int(x) for x in c)
    for x in c:
        if x != 0:
            return c if x > 0 else tuple(-y for y in c)
    return c


def rational_basis(
    null: np.ndarray, tol: float, max_int: int = MAX_EXPONENT
) -> tuple[list[tuple[int, ...]], list[float]] | None:
    """Small-integer vectors spanning the column space of `null` (orthonormal), or None.

    The basis is brought to reduced row-echelon form with full pivoting (each vector has a 1 at its
    pivot and 0 at the others' pivots); its entries are then rounded to fractions with denominators
    up to `max_int` and cleared to integers. The rational basis is accepted only when every vector
    lies within `tol` (sine of the angle) of the numerical null space and the largest integer is at
    most `max_int`. Returns the integer vectors and their residuals.
    """
    a = np.array(null, dtype=float).T.copy()
    k = a.shape[0]
    used: list[int] = []
    for i in range(k):
        sub = np.abs(a[i:, :])
        sub[:, used] = -1.0
        r, c = np.unravel_index(int(np.argmax(sub)), sub.shape)
        r += i
        if abs(a[r, c]) == 0:
            return None
        a[[i, r]] = a[[r, i]]
        a[i] /= a[i, c]
        for j in range(k):
            if j != i:
                a[j] -= a[j, c] * a[i]
        used.append(int(c))
    vectors, residuals = [], []
    projector = null @ null.T
    for row in a:
        fracs = [Fraction(float(x)).limit_denominator(max_int) for x in row]
        lcm = math.lcm(*(f.denominator for f in fracs))
        ints = [int(f * lcm) for f in fracs]
        g = math.gcd(*ints)
        if g == 0:
            return None
        ints = [x // g for x in ints]
        if max(abs(x) for x in ints) > max_int:
            return None
        vec = np.array(ints, dtype=float)
        vec /= np.linalg.norm(vec)
        res = float(np.linalg.norm(vec - projector @ vec))
        if res > tol:
            return None
        vectors.append(_canonical_sign(ints))
        residuals.append(res)
    # In parameter order: by the position of the first non-zero entry, then the entries.
    order = sorted(range(k), key=lambda i: [-abs(x) for x in vectors[i]])
    return [vectors[i] for i in order], [residuals[i] for i in order]


def integer_kernel(rows: np.ndarray) -> list[tuple[int, ...]]:
    """A basis of the integer lattice {c ∈ Zⁿ : rows · c = 0} (exact, by unimodular column operations).

    Column operations bring `rows` to column echelon form A·U = [H | 0] with U unimodular; the
    columns of U facing the zero block span the kernel over the integers, not only over the rationals.
    """
    a = [[int(x) for x in r] for r in np.asarray(rows)]
    n = len(a[0]) if a else 0
    u = [[int(i == j) for j in range(n)] for i in range(n)]

    def col_op(j: int, c: int, q: int) -> None:  # column j -= q · column c
        for row in a:
            row[j] -= q * row[c]
        for row in u:
            row[j] -= q * row[c]

    def swap(j: int, c: int) -> None:
        for row in a:
            row[j], row[c] = row[c], row[j]
        for row in u:
            row[j], row[c] = row[c], row[j]

    c = 0
    for row in a:
        while c < n:
            nz = [j for j in range(c, n) if row[j] != 0]
            if not nz:
                break
            j = min(nz, key=lambda j: abs(row[j]))
            swap(j, c)
            if all(row[j] == 0 for j in range(c + 1, n)):
                break
            for j in range(c + 1, n):
                if row[j] != 0:
                    col_op(j, c, row[j] // row[c])
        if c < n and row[c] != 0:
            c += 1
    return [_canonical_sign([u[i][j] for i in range(n)]) for j in range(c, n)]


def _gcd_of_minors(vectors: np.ndarray) -> int:
    """gcd of the maximal minors of an (r, s) integer matrix: 1 iff its rows generate a saturated
    lattice (so a set of r vectors of a saturated rank-r lattice is a basis of it iff this is 1)."""
    import sympy

    m = sympy.Matrix(np.asarray(vectors, dtype=int).tolist())
    r, s = m.shape
    g = 0
    for cols in itertools.combinations(range(s), r):
        g = math.gcd(g, int(m[:, list(cols)].det()))
        if g == 1:
            return 1
    return g


def combination_basis(
    null_rows: np.ndarray, information: np.ndarray
) -> tuple[list[tuple[int, ...]], str]:
    """Small-integer vectors c with null_rows · c = 0 forming a basis of that lattice.

    **Arguments:**
    - `null_rows`: (k, s) integer null vectors (on the support of the null space).
    - `information`: the (s, s) information about those parameters, the others held fixed.

    Candidates with entries in {-1, 0, 1}, then {-2, …, 2}, are tried first (fewest and smallest
    exponents). Among them the basis is chosen greedily closest to the eigen-directions of
    `information`, stiffest first (eigen-directions are the uncorrelated combinations), and each
    vector is signed to point along its eigen-direction oriented by its largest loading. If no basis
    of the whole lattice comes out of the small candidates, the exact kernel basis is used.
    """
    rows = np.asarray(null_rows, dtype=int)
    k, s = rows.shape
    r = s - k
    if r <= 0:
        return [], "none"
    w, v = np.linalg.eigh(information)
    directions = v[:, np.argsort(w)[::-1][:r]]
    for m in (1, 2):
        if (2 * m + 1) ** s > _MAX_CANDIDATES:
            break
        grid = np.array(list(itertools.product(range(-m, m + 1), repeat=s)), dtype=int)
        ok = np.all(grid @ rows.T == 0, axis=1) & np.any(grid != 0, axis=1)
        cands = sorted({_canonical_sign(c) for c in grid[ok]})
        if len(cands) < r:
            continue
        arr = np.array(cands, dtype=float)
        unit = arr / np.linalg.norm(arr, axis=1, keepdims=True)
        l1 = np.abs(arr).sum(axis=1)
        chosen: list[np.ndarray] = []
        for j in range(r):
            d = directions[:, j]
            d = d * (np.sign(d[int(np.argmax(np.abs(d)))]) or 1.0)
            score = np.round(np.abs(unit @ d), 10)
            for i in np.lexsort((l1, -score)):  # best score, then fewest exponents
                trial = [*chosen, arr[i]]
                if np.linalg.matrix_rank(np.array(trial)) == len(trial):
                    c = arr[i] if unit[i] @ d >= 0 else -arr[i]
                    chosen.append(c)
                    break
        if len(chosen) == r and _gcd_of_minors(np.array(chosen)) == 1:
            return [tuple(int(x) for x in c) for c in chosen], f"small exponents (|e| ≤ {m})"
    return integer_kernel(rows), "exact integer kernel"


# -- readable results ---------------------------------------------------------------------------------
def _power(name: str, e: int) -> str:
    return name if e == 1 else f"{name}^{e}"


def monomial_text(names: Sequence[str], exponents: Sequence[int]) -> str:
    """'D/V', 'k1·k3', 'k1^2·k2/(k3·k4)'."""
    num = [_power(n, e) for n, e in zip(names, exponents, strict=True) if e > 0]
    den = [_power(n, -e) for n, e in zip(names, exponents, strict=True) if e < 0]
    top = "·".join(num) if num else "1"
    if not den:
        return top
    return f"{top}/{den[0]}" if len(den) == 1 else f"{top}/({'·'.join(den)})"


def linear_text(names: Sequence[str], coefficients: Sequence[int]) -> str:
    """'a + b', '5·CL - V'."""
    parts = []
    for n, c in zip(names, coefficients, strict=True):
        if c == 0:
            continue
        term = n if abs(c) == 1 else f"{abs(c)}·{n}"
        parts.append(("- " if c < 0 else "+ ") + term)
    text = " ".join(parts)
    return text[2:] if text.startswith("+ ") else "-" + text[2:]


def _factor(e: int) -> str:
    if e == 1:
        return "λ·"
    if e > 0:
        return f"λ^{e}·"
    return "" if e == 0 else ("/λ" if e == -1 else f"/λ^{-e}")


@dataclass(frozen=True, eq=False)
class Symmetry:
    """One direction of the null space, in words.

    **Fields:**
    - `names`, `scale`: the parameters and the scale of the information.
    - `vector`: the unit null-space direction (a column of `Identifiability.null_space` when there is
      one null direction; a vector of its rational basis otherwise).
    - `integers`: the small-integer form of the direction, or None when none fits within `tolerance`.
      On the log scale these are exponents: θ_j → λ^{n_j}·θ_j leaves the predictions unchanged to
      first order; on the linear scale, θ_j → θ_j + n_j·ε does.
    - `residual`: sine of the angle between the integer form and the numerical null space.
    - `tolerance`: the largest residual accepted for rounding.
    - `exact`: True when simulating at finite transformed parameters left the predictions unchanged,
      False when it changed them (the direction is then only first-order, local), None if unchecked.
    - `check`: how `exact` was decided, in words.
    """

    names: tuple[str, ...]
    scale: str
    vector: np.ndarray
    integers: tuple[int, ...] | None
    residual: float | None
    tolerance: float
    exact: bool | None
    check: str

    @property
    def rational(self) -> bool:
        return self.integers is not None

    @property
    def involved(self) -> tuple[str, ...]:
        """The parameters that move along this direction."""
        if self.integers is not None:
            return tuple(n for n, e in zip(self.names, self.integers, strict=True) if e != 0)
        big = np.abs(self.vector) > 1e-3 * np.max(np.abs(self.vector))
        return tuple(n for n, b in zip(self.names, big, strict=True) if b)

    @property
    def transformation(self) -> str:
        """The change of parameters along this direction: 'k1 → λ·k1, k2 → k2/λ^2'."""
        if self.integers is None:
            return format_direction(self.vector, self.names)
        terms = []
        for n, e in zip(self.names, self.integers, strict=True):
            if e == 0:
                continue
            if self.scale == "log":
                f = _factor(e)
                terms.append(f"{n} → {f}{n}" if e > 0 else f"{n} → {n}{f}")
            else:
                step = "ε" if abs(e) == 1 else f"{abs(e)}ε"
                terms.append(f"{n} → {n} {'-' if e < 0 else '+'} {step}")
        return ", ".join(terms)

    @property
    def description(self) -> str:
        """'CL, V, D scale together', 'D does not affect the predictions', or the transformation."""
        if self.integers is None:
            return (
                f"not identifiable along {format_direction(self.vector, self.names)} "
                f"(on the {self.scale} scale; no small-integer form within {self.tolerance:.1e})"
            )
        moving = [(n, e) for n, e in zip(self.names, self.integers, strict=True) if e != 0]
        if len(moving) == 1:
            return f"{moving[0][0]} does not affect the predictions"
        if self.scale == "log" and len({e for _, e in moving}) == 1:
            return f"{', '.join(n for n, _ in moving)} scale together"
        order = "" if self.exact else " to first order"
        if self.scale == "log":
            return (
                f"{self.transformation} leaves the predictions unchanged{order} "
                f"(the direction of {self.monomial})"
            )
        return f"{self.transformation} leaves the predictions unchanged{order}"

    @property
    def monomial(self) -> str | None:
        """On the log scale, the monomial whose logarithm changes along this direction."""
        if self.integers is None or self.scale != "log":
            return None
        return monomial_text(self.names, self.integers)

    def __str__(self) -> str:
        return f"{self.description} ({self.check})"


@dataclass(frozen=True)
class Combination:
    """An identifiable combination of parameters that are not identifiable one by one.

    **Fields:**
    - `names`: all parameter names (the exponent vector runs over them).
    - `exponents`: integer exponents (``kind == "monomial"``: Π θ_j^{e_j}) or integer coefficients
      (``kind == "linear"``: Σ e_j θ_j).
    - `value`: the combination at θ.
    - `se`: its Cramér–Rao standard error: of log(value) for a monomial, of value for a linear form.
    - `local`: True unless every symmetry it is built on was checked to hold exactly.
    """

    names: tuple[str, ...]
    exponents: tuple[int, ...]
    kind: str
    value: float
    se: float
    local: bool

    @property
    def text(self) -> str:
        if self.kind == "monomial":
            return monomial_text(self.names, self.exponents)
        return linear_text(self.names, self.exponents)

    def as_dict(self) -> dict[str, int]:
        """The non-zero exponents (or coefficients) by parameter name."""
        return {n: e for n, e in zip(self.names, self.exponents, strict=True) if e != 0}

    @property
    def rse(self) -> float:
        """Relative standard error in percent (first order)."""
        if self.kind == "monomial":
            return 100.0 * self.se
        return 100.0 * self.se / abs(self.value) if self.value != 0 else float("nan")

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, eq=False)
class Identifiability:
    """Local identifiability of the parameters of a Fisher information.

    **Fields:**
    - `fim`: the `FisherInformation` analysed.
    - `eigenvalues`, `eigenvectors`: its spectrum, ascending, vectors as columns.
    - `rank`: the numerical rank: eigenvalues above `tolerance` = `rtol` × the largest.
    - `null_space`: orthonormal basis (columns) of the discarded directions, each signed so that its
      largest component is positive.
    - `null_weights`: per parameter, the length of its row of `null_space` (0: in no null direction,
      1: the parameter alone is a null direction); `null_weight_tol` is the cut used for verdicts.
    - `accuracy`: the estimated error of the null space (sine of the angle, see `docs/identifiability.md`).
    - `rse`: relative standard errors in percent (inf for parameters in the null space), from the
      inverse on the identifiable part; `rse_threshold` turns a finite RSE into a verdict.
    - `symmetries`: the null directions in words (`Symmetry`).
    - `combinations`: identifiable combinations of the non-identifiable parameters (`Combination`).
    - `notes`: what a reader must know: rounding, locality, an ambiguous rank.
    """

    fim: FisherInformation
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    rank: int
    rtol: float
    tolerance: float
    null_space: np.ndarray
    null_weights: np.ndarray
    null_weight_tol: float
    accuracy: float
    rse: np.ndarray
    rse_threshold: float
    verdict_list: tuple[str, ...]
    symmetries: tuple[Symmetry, ...]
    combinations: tuple[Combination, ...]
    notes: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return self.fim.names

    @property
    def size(self) -> int:
        return self.fim.size

    @property
    def scale(self) -> str:
        return self.fim.scale

    @property
    def singular_values(self) -> np.ndarray:
        """Singular values of the information, descending (|eigenvalues| of a symmetric matrix).

        Their square roots are the singular values of the noise-weighted sensitivity matrix."""
        return np.sort(np.abs(self.eigenvalues))[::-1]

    @property
    def gap_decades(self) -> float | None:
        """log10 of the smallest kept eigenvalue over the largest |discarded| one; None at full
        rank or rank 0."""
        kept = self.eigenvalues[self.eigenvalues > self.tolerance]
        dropped = self.eigenvalues[self.eigenvalues <= self.tolerance]
        if kept.size == 0 or dropped.size == 0:
            return None
        return float(
            np.log10(np.min(kept) / max(float(np.max(np.abs(dropped))), np.finfo(float).tiny))
        )

    @property
    def margin_decades(self) -> float | None:
        """log10 of the smallest kept eigenvalue over the tolerance: how far the rank is from
        changing if the tolerance rose; None at rank 0."""
        kept = self.eigenvalues[self.eigenvalues > self.tolerance]
        if kept.size == 0:
            return None
        return float(np.log10(np.min(kept) / self.tolerance))

    @property
    def well_separated(self) -> bool:
        """True when the tolerance sits at least two decades from the nearest eigenvalue on each
        side, so that a moderate change of `rtol` would not change the rank."""
        kept = self.eigenvalues[self.eigenvalues > self.tolerance]
        dropped = np.abs(self.eigenvalues[self.eigenvalues <= self.tolerance])
        above = kept.size == 0 or np.min(kept) >= 100 * self.tolerance
        below = dropped.size == 0 or np.max(dropped) <= self.tolerance / 100
        return bool(above and below)

    @property
    def verdicts(self) -> dict[str, str]:
        """Parameter name → "identifiable", "not identifiable" or "practically non-identifiable"."""
        return dict(zip(self.names, self.verdict_list, strict=True))

    @property
    def identifiable(self) -> list[str]:
        return [n for n, v in self.verdicts.items() if v == IDENTIFIABLE]

    @property
    def nonidentifiable(self) -> list[str]:
        """Parameters with weight in the null space."""
        return [n for n, v in self.verdicts.items() if v == NOT_IDENTIFIABLE]

    @property
    def practically_nonidentifiable(self) -> list[str]:
        """Parameters with a finite but too large relative standard error."""
        return [n for n, v in self.verdicts.items() if v == PRACTICALLY_NONIDENTIFIABLE]

    def summary(self) -> Summary:
        """Tables of verdicts, the spectrum, the symmetries and the identifiable combinations."""
        log = self.scale == "log"
        rows = tuple(
            (
                n,
                fmt(float(self.fim.theta[j])),
                self.verdict_list[j],
                fmt(float(self.rse[j]), 3),
                fmt(float(self.null_weights[j]), 2),
            )
            for j, n in enumerate(self.names)
        )
        head_notes = [
            f"rank {self.rank} of {self.size} on the {self.scale} scale: eigenvalues ≤ "
            f"{self.tolerance:.3g} (rtol {self.rtol:g} × the largest) count as zero",
        ]
        if self.gap_decades is not None:
            head_notes.append(
                f"gap at the rank cut: {self.gap_decades:.1f} decades between the smallest kept "
                "and the largest discarded eigenvalue"
            )
        if self.margin_decades is not None:
            head_notes.append(
                f"the smallest kept eigenvalue lies {self.margin_decades:.1f} decades above the "
                "tolerance"
            )
        if not self.well_separated:
            head_notes.append(
                "the tolerance lies within two decades of an eigenvalue: the rank depends on rtol "
                "(see the spectrum below)"
            )
        head_notes.append(
            f"RSE from the inverse on the identifiable part ({'of log θ' if log else 'θ'}); "
            f"'practically non-identifiable' above {self.rse_threshold:g} %"
        )
        head_notes.extend(self.notes)
        tables = [
            Table(
                "Identifiability",
                ("parameter", "value", "verdict", "RSE %", "null weight"),
                rows,
                tuple(head_notes),
            )
        ]
        lam_max = float(np.max(np.abs(self.eigenvalues))) or 1.0
        tables.append(
            Table(
                "Eigenvalues (ascending)",
                ("eigenvalue", "λ/λmax", "kept", "direction (largest loadings)"),
                tuple(
                    (
                        fmt(float(w)),
                        fmt(float(w) / lam_max, 3),
                        "yes" if w > self.tolerance else "no",
                        format_direction(self.eigenvectors[:, j], self.names, digits=2),
                    )
                    for j, w in enumerate(self.eigenvalues)
                ),
            )
        )
        if self.symmetries:
            tables.append(
                Table(
                    "Non-identifiable directions",
                    ("direction", "integer form", "residual", "beyond first order"),
                    tuple(
                        (
                            s.description,
                            "-" if s.integers is None else str(s.integers),
                            "-" if s.residual is None else f"{s.residual:.1e}",
                            s.check,
                        )
                        for s in self.symmetries
                    ),
                )
            )
        if self.combinations:
            what = "log(value)" if self.combinations[0].kind == "monomial" else "value"
            tables.append(
                Table(
                    "Identifiable combinations",
                    ("combination", "value", f"SE of {what}", "RSE %", "holds"),
                    tuple(
                        (
                            c.text,
                            fmt(c.value),
                            fmt(c.se),
                            fmt(c.rse, 3),
                            "locally (first order)" if c.local else "exactly (checked)",
                        )
                        for c in self.combinations
                    ),
                )
            )
        return Summary(tuple(tables))

    def to_dict(self) -> dict[str, Any]:
        """Plain Python data (JSON-serialisable, except inf RSE values kept as float)."""
        return {
            "names": list(self.names),
            "scale": self.scale,
            "eigenvalues": self.eigenvalues.tolist(),
            "rank": self.rank,
            "rtol": self.rtol,
            "tolerance": self.tolerance,
            "gap_decades": self.gap_decades,
            "null_space": self.null_space.tolist(),
            "verdicts": self.verdicts,
            "rse": dict(zip(self.names, self.rse.tolist(), strict=True)),
            "symmetries": [
                {"description": s.description, "integers": s.integers, "exact": s.exact}
                for s in self.symmetries
            ],
            "combinations": [{"text": c.text, "exponents": c.as_dict()} for c in self.combinations],
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        return str(self.summary())

    def __repr__(self) -> str:
        return (
            f"Identifiability(rank={self.rank}/{self.size}, scale={self.scale!r}, "
            f"nonidentifiable={self.nonidentifiable}, "
            f"practically_nonidentifiable={self.practically_nonidentifiable})"
        )


# -- checking a symmetry with the model ----------------------------------------------------------------
def _check_symmetry(
    model: AbstractModel, design: Any, fim: FisherInformation, integers: tuple[int, ...]
) -> tuple[bool | None, str]:
    """Simulate at finitely transformed parameters and compare the predictions."""
    from ..prediction import predict

    theta = dict(zip(fim.names, fim.theta.tolist(), strict=True))
    moving = {n: e for n, e in zip(fim.names, integers, strict=True) if e != 0}
    outside = [n for n in moving if n not in model.params]
    if outside:
        return None, f"not checked: it moves noise parameters {outside}"
    base = {n: theta[n] for n in model.params}
    if fim.scale == "log":
        steps = [
            (f"λ = {f:g}", {n: base[n] * f**e for n, e in moving.items()}) for f in _CHECK_FACTORS
        ]
    else:
        sizes = [abs(base[n]) / abs(e) for n, e in moving.items() if base[n] != 0]
        eps = 0.5 * min(sizes) if sizes else 0.5
        steps = [
            (f"ε = {s * eps:.3g}", {n: base[n] + s * e * eps for n, e in moving.items()})
            for s in (-1, 1)
        ]
    solver_rtol = fim.provenance.get("rtol")
    limit = max(1e-6, 100 * solver_rtol) if _is_number(solver_rtol) else 1e-6
    try:
        mu0 = np.concatenate([v.ravel() for v in predict(model, base, design).values])
        worst, where = 0.0, ""
        for label, change in steps:
            mu = np.concatenate(
                [v.ravel() for v in predict(model, {**base, **change}, design).values]
            )
            d = float(np.max(np.abs(mu - mu0)) / max(float(np.max(np.abs(mu0))), 1e-300))
            if d >= worst:
                worst, where = d, label
    except FimkitError as exc:
        return None, f"not checked: simulating the transformed parameters failed ({exc})"
    points = " and ".join(label for label, _ in steps)
    if worst <= limit:
        return True, f"exact: predictions at {points} agree to {worst:.1e} (relative)"
    return False, f"local only: predictions change by {worst:.1e} (relative) at {where}"


# -- the entry point -------------------------------------------------------------------------------
def _is_petab(obj: Any) -> bool:
    from ..models import is_petab_problem

    return is_petab_problem(obj)


def identifiability(
    fim_or_model: FisherInformation | AbstractModel,
    theta: Any = None,
    design: Any = None,
    *,
    noise: Any = None,
    scale: str | None = None,
    rtol: float | None = None,
    rse_threshold: float = DEFAULT_RSE_THRESHOLD,
    rational_tol: float | None = None,
) -> Identifiability:
    """Local identifiability of each parameter, the null space in words, identifiable combinations.

    Called as ``identifiability(F)`` with a `FisherInformation`, or as
    ``identifiability(model, theta, design, noise=..., scale="log")``, which computes the information
    first (on the log scale unless `scale` says otherwise) and also checks each rational symmetry
    with the model at finitely transformed parameters. A PEtab problem is called as
    ``identifiability(problem, x)``: the expected information of its measurements at x (default:
    nominal), about the parameters on their PEtab scales unless `scale` is ``"log"`` or ``"lin"``.

    **Arguments:**
    - `fim_or_model`: a `FisherInformation`, or a model (then `theta`, `design`, `noise` are needed).
    - `scale`: ``"log"`` or ``"lin"``. With a `FisherInformation` it converts it (default: keep);
      with a model it is the scale of the information (default ``"log"``: scaling symmetries and
      monomial combinations are read on the log scale).
    - `rtol`: eigenvalues at or below `rtol` × the largest count as zero (default `DEFAULT_RTOL`,
      1e-13; see `docs/identifiability.md` for how to tie it to the solver's tolerance).
    - `rse_threshold`: percent; a finite RSE above it makes a parameter practically
      non-identifiable (default 50; ``float("inf")`` turns the verdict off).
    - `rational_tol`: the largest distance (sine of the angle) at which a small-integer vector is
      accepted as the rational form of a null direction; default 10 × the estimated accuracy of
      the null space, within [1e-10, 1e-2].

    **Returns:** an `Identifiability` with `.verdicts`, `.nonidentifiable`,
    `.practically_nonidentifiable`, `.null_space`, `.symmetries`, `.combinations`, `.summary()`.
    """
    function = "identifiability"
    model = None
    if isinstance(fim_or_model, FisherInformation):
        given = [
            a for a, v in (("theta", theta), ("design", design), ("noise", noise)) if v is not None
        ]
        if given:
            raise FimkitError(
                f"identifiability was given a FisherInformation and also {given}; these arguments "
                "are only for the form identifiability(model, theta, design, noise=...)."
            )
        fim = fim_or_model if scale is None else fim_or_model.to_scale(scale)
    elif _is_petab(fim_or_model):
        if design is not None or noise is not None:
            raise FimkitError(
                "identifiability(problem, x) of a PEtab problem takes its design and noise from the "
                f"PEtab tables; 'design' and 'noise' must not be given. Got design={design!r}, "
                f"noise={noise!r}."
            )
        fim = fim_or_model.fisher_information(theta, scale=scale or "petab")
    elif isinstance(fim_or_model, AbstractModel):
        missing = [
            a for a, v in (("theta", theta), ("design", design), ("noise", noise)) if v is None
        ]
        if missing:
            raise FimkitError(
                f"identifiability(model, theta, design, noise=...) is missing {missing}. Pass them, "
                "or pass a FisherInformation instead of the model."
            )
        model = fim_or_model
        fim = fisher_information(model, theta, design, noise=noise, scale=scale or "log")
    else:
        raise FimkitError(
            "The first argument of identifiability must be a FisherInformation, or a fimkit model "
            f"followed by theta, design and noise=. Got {describe(fim_or_model)} instead."
        )
    rtol = check_rtol(rtol, function)
    rse_threshold = _check_positive(rse_threshold, "rse_threshold", function, allow_inf=True)
    if rational_tol is not None:
        rational_tol = _check_positive(rational_tol, "rational_tol", function)

    names = fim.names
    w, v, tol, keep = spectrum(fim.matrix, rtol)
    rank = int(keep.sum())
    null = _signed_columns(v[:, ~keep])
    accuracy = null_space_accuracy(w, keep)
    notes: list[str] = []

    weights = np.sqrt(np.sum(null**2, axis=1)) if null.size else np.zeros(len(names))
    weight_tol = min(max(10 * accuracy, _NULL_WEIGHT_MIN), _NULL_WEIGHT_MAX)
    if 10 * accuracy > _NULL_WEIGHT_MAX:
        notes.append(
            f"the null space is known only to about {accuracy:.0e} (small gap): parameters with "
            f"null weight below {weight_tol:g} are called identifiable, which may be wrong"
        )
    in_null = weights > weight_tol

    # Cramér–Rao bounds on the identifiable part: for c orthogonal to the null space, cᵀ I⁺ c is the
    # bound on the variance of cᵀθ (any generalised inverse gives the same value).
    pinv = (v[:, keep] / w[keep]) @ v[:, keep].T
    se = np.sqrt(np.clip(np.diag(pinv), 0.0, None))
    se[in_null] = np.inf
    if fim.scale == "log":
        rse = 100.0 * se
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            rse = np.where(fim.theta != 0, 100.0 * se / np.abs(fim.theta), np.nan)
        rse[in_null] = np.inf
        if np.any(np.isnan(rse)):
            zero = [n for n, r in zip(names, rse, strict=True) if np.isnan(r)]
            notes.append(f"RSE undefined for parameters at 0 on the linear scale: {zero}")
    verdicts = tuple(
        NOT_IDENTIFIABLE
        if in_null[j]
        else (PRACTICALLY_NONIDENTIFIABLE if rse[j] > rse_threshold else IDENTIFIABLE)
        for j in range(len(names))
    )

    negative = w[w < -tol]
    if negative.size:
        notes.append(
            f"{negative.size} eigenvalue(s) below -tolerance (most negative {negative.min():.3g}): "
            "not a valid Fisher information (an observed information away from the optimum?)"
        )
    solver_rtol = fim.provenance.get("rtol")
    if _is_number(solver_rtol) and rank:
        # Sensitivities with relative error ~ solver rtol can lift a null eigenvalue to about
        # rtol² × the largest (docs/fisher_information.md): kept eigenvalues below that may be noise.
        floor = solver_rtol**2 * float(np.max(np.abs(w)))
        doubtful = int(np.sum(keep & (w <= floor)))
        if doubtful:
            notes.append(
                f"{doubtful} kept eigenvalue(s) lie below {floor:.1e} (the solver's rtol "
                f"{solver_rtol:g} squared × the largest), where solver error can lift a null "
                "eigenvalue: recompute with a tighter solver tolerance to confirm the rank"
            )

    # Readable null directions.
    symmetries: list[Symmetry] = []
    combinations: list[Combination] = []
    if null.shape[1]:
        round_tol = rational_tol
        if round_tol is None:
            round_tol = min(max(10 * accuracy, _ROUND_TOL_MIN), _ROUND_TOL_MAX)
        fitted = None
        if 10 * accuracy <= _ROUND_TOL_MAX or rational_tol is not None:
            fitted = rational_basis(null, round_tol)
        if fitted is None:
            reason = (
                f"the null space is known only to about {accuracy:.0e} (small gap)"
                if 10 * accuracy > _ROUND_TOL_MAX and rational_tol is None
                else f"no small-integer form (|n| ≤ {MAX_EXPONENT}) within {round_tol:.1e}"
            )
            notes.append(f"null directions not rounded: {reason}")
            for j in range(null.shape[1]):
                symmetries.append(
                    Symmetry(
                        names, fim.scale, null[:, j], None, None, round_tol, None, "not rounded"
                    )
                )
        else:
            ints, residuals = fitted
            notes.append(
                f"null directions rounded to small integers: residual ≤ {max(residuals):.1e} "
                f"(tolerance {round_tol:.1e}, from the null space's accuracy {accuracy:.0e})"
            )
            for vec, res in zip(ints, residuals, strict=True):
                unit = np.array(vec, dtype=float) / np.linalg.norm(vec)
                if null.shape[1] == 1:
                    unit = null[:, 0]
                if model is not None:
                    exact, check = _check_symmetry(model, design, fim, vec)
                else:
                    exact, check = None, "first order at θ (pass the model to check it globally)"
                symmetries.append(
                    Symmetry(names, fim.scale, unit, vec, res, round_tol, exact, check)
                )
            rows = np.array(ints, dtype=int)
            support = np.flatnonzero(np.any(rows != 0, axis=0))
            basis, _how = combination_basis(rows[:, support], fim.matrix[np.ix_(support, support)])
            local = not all(s.exact for s in symmetries)
            for c_support in basis:
                c = np.zeros(len(names), dtype=int)
                c[support] = c_support
                cf = c.astype(float)
                se_c = float(np.sqrt(max(cf @ pinv @ cf, 0.0)))
                if fim.scale == "log":
                    value = float(np.prod(fim.theta**cf))
                    kind = "monomial"
                else:
                    value = float(cf @ fim.theta)
                    kind = "linear"
                combinations.append(
                    Combination(names, tuple(int(x) for x in c), kind, value, se_c, local)
                )
            if local and combinations:
                notes.append(
                    "the combinations are identifiable to first order at θ; "
                    "structural_identifiability (on a SymbolicModel) decides exactly which hold for "
                    "every generic θ"
                )
        if fim.scale == "lin" and np.all(fim.theta > 0):
            # A scaling symmetry shows on the linear scale as a null vector ∝ θ_j·n_j.
            log_form = rational_basis(_orthonormal(null / fim.theta[:, None]), max(round_tol, 1e-8))
            if (
                fitted is None
                and log_form is not None
                and any(sum(x != 0 for x in n) > 1 for n in log_form[0])
            ):
                notes.append(
                    "on the log scale the null directions are scaling symmetries (exponents "
                    f"{log_form[0]}): identifiability(..., scale='log') reads them as monomials"
                )
    return Identifiability(
        fim=fim,
        eigenvalues=w,
        eigenvectors=v,
        rank=rank,
        rtol=rtol,
        tolerance=tol,
        null_space=null,
        null_weights=weights,
        null_weight_tol=weight_tol,
        accuracy=accuracy,
        rse=rse,
        rse_threshold=rse_threshold,
        verdict_list=verdicts,
        symmetries=tuple(symmetries),
        combinations=tuple(combinations),
        notes=tuple(notes),
    )


def _orthonormal(m: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(m)
    return q


__all__ = [
    "DEFAULT_RSE_THRESHOLD",
    "IDENTIFIABLE",
    "NOT_IDENTIFIABLE",
    "PRACTICALLY_NONIDENTIFIABLE",
    "VERDICTS",
    "Combination",
    "Identifiability",
    "Symmetry",
    "identifiability",
]
