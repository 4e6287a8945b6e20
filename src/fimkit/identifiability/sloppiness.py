"""Sloppiness: the eigenvalue spectrum of a Fisher information (or χ² Hessian) and what it implies.

Gutenkunst et al. (PLoS Comput Biol 3:e189, 2007) found that the eigenvalues of the information of
systems-biology models spread roughly evenly over many decades: a few stiff eigen-parameters (linear
combinations of log parameters) are well determined, most are sloppy. This module reports the spectrum
normalised by its largest eigenvalue, its span in decades, the number of eigenvalues within chosen
numbers of decades of the largest, the stiff and sloppy eigen-parameters by their largest loadings,
and an explicit numerical noise floor below which a spectrum says nothing; plots the spectra of one
or several models as an eigenvalue "ladder"; and splits the variance of a prediction, ∇gᵀ I⁻¹ ∇g,
into the share each eigen-direction contributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import FimkitError, ParameterError, describe
from ..information.fim import FisherInformation, format_direction
from ..report.tables import Summary, Table, fmt
from .local import check_rtol, null_space_accuracy, spectrum

DEFAULT_DECADES = (3.0, 6.0)
# A stored matrix counts as symmetric when its largest asymmetry is below this × its largest entry.
_SYMMETRY_RTOL = 1e-8
_EPS = np.finfo(float).eps


@dataclass(frozen=True)
class EigenParameter:
    """One eigen-direction of the information: a combination of (log) parameters.

    **Fields:** `index` (0 = stiffest), `eigenvalue`, `relative` (eigenvalue / the largest),
    `loadings` (the largest components of the unit eigenvector, by name, largest first, the vector
    signed so that its largest component is positive), `resolved` (above the noise floor).
    """

    index: int
    eigenvalue: float
    relative: float
    loadings: tuple[tuple[str, float], ...]
    resolved: bool

    def __str__(self) -> str:
        terms = " ".join(f"{'-' if c < 0 else '+'} {abs(c):.2f}·{n}" for n, c in self.loadings)
        terms = terms[2:] if terms.startswith("+ ") else "-" + terms[2:]
        flag = "" if self.resolved else " (below the noise floor)"
        return f"λ/λmax = {self.relative:.2e}: {terms}{flag}"


@dataclass(frozen=True, eq=False)
class Sloppiness:
    """The normalised eigenvalue spectrum of an information or χ² Hessian.

    **Fields:**
    - `names`: parameter names; `scale`: the scale of the information (None for a plain matrix).
    - `eigenvalues`: descending (stiffest first); `eigenvectors`: unit columns in the same order.
    - `decades`: the thresholds of `counts`.
    - `roundoff`: the eigen-solver's roundoff, N·ε, relative to the largest |eigenvalue|: an
      eigenvalue within ±roundoff × λmax of zero has no determined sign.
    - `noise_floor`: relative level below which eigenvalues are not resolved, and
      `noise_floor_source`: what set it (roundoff, the largest negative eigenvalue of a matrix that
      should be positive semi-definite, the solver's tolerance, or the user).
    - `label`: a name for plots and tables.
    """

    names: tuple[str, ...]
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    decades: tuple[float, ...]
    roundoff: float
    noise_floor: float
    noise_floor_source: str
    label: str
    scale: str | None

    @property
    def size(self) -> int:
        return len(self.names)

    @property
    def lambda_max(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def normalized(self) -> np.ndarray:
        """Eigenvalues divided by the largest, descending."""
        return self.eigenvalues / self.lambda_max

    def count(self, decades: float) -> int:
        """Number of eigenvalues above 10^-decades × the largest."""
        return int(np.sum(self.normalized > 10.0 ** (-float(decades))))

    @property
    def counts(self) -> dict[float, int]:
        """Number of eigenvalues within each of `decades` decades of the largest."""
        return {d: self.count(d) for d in self.decades}

    @property
    def n3(self) -> int:
        """Eigenvalues above 1e-3 × the largest (Gutenkunst et al. 2007)."""
        return self.count(3)

    @property
    def n6(self) -> int:
        """Eigenvalues above 1e-6 × the largest."""
        return self.count(6)

    @property
    def span(self) -> float:
        """Decades from the largest eigenvalue to the smallest one that is positive beyond roundoff.

        This is the span of Gutenkunst et al. (λmax over the smallest positive eigenvalue) with
        eigenvalues within ±`roundoff` × λmax counted as zero: their sign is not determined."""
        r = self.normalized
        return float(-np.log10(np.min(r[r > self.roundoff])))

    @property
    def resolved_span(self) -> float:
        """Decades from the largest eigenvalue to the smallest one above the noise floor."""
        r = self.normalized
        return float(-np.log10(np.min(r[r > self.noise_floor])))

    @property
    def n_negative(self) -> int:
        """Eigenvalues below -roundoff × λmax."""
        return int(np.sum(self.normalized < -self.roundoff))

    @property
    def n_zero(self) -> int:
        """Eigenvalues within ±roundoff × λmax of zero (sign not determined)."""
        return int(np.sum(np.abs(self.normalized) <= self.roundoff))

    @property
    def n_below_noise(self) -> int:
        """Eigenvalues at or below the noise floor."""
        return int(np.sum(self.normalized <= self.noise_floor))

    def eigenparameter(self, index: int, top: int = 3) -> EigenParameter:
        """The `index`-th eigen-direction (0 = stiffest) with its `top` largest loadings."""
        v = self.eigenvectors[:, index]
        v = v * (np.sign(v[int(np.argmax(np.abs(v)))]) or 1.0)
        order = np.argsort(-np.abs(v), kind="stable")[:top]
        return EigenParameter(
            int(index),
            float(self.eigenvalues[index]),
            float(self.normalized[index]),
            tuple((self.names[i], float(v[i])) for i in order),
            bool(self.normalized[index] > self.noise_floor),
        )

    def stiff(self, n: int = 3, top: int = 3) -> tuple[EigenParameter, ...]:
        """The `n` stiffest eigen-parameters (largest eigenvalues), stiffest first."""
        return tuple(self.eigenparameter(i, top) for i in range(min(n, self.size)))

    def sloppy(self, n: int = 3, top: int = 3) -> tuple[EigenParameter, ...]:
        """The `n` sloppiest eigen-parameters (smallest eigenvalues), sloppiest first; those below
        the noise floor are flagged (`resolved` False)."""
        return tuple(
            self.eigenparameter(i, top) for i in range(self.size - 1, max(self.size - n, 0) - 1, -1)
        )

    def summary(self, top: int = 3) -> Summary:
        """The spectrum with the largest loadings of each eigen-parameter, and the counts."""
        counts = ", ".join(f"{self.count(d)} within {d:g} decades" for d in self.decades)
        notes = (
            f"N = {self.size}; {counts}",
            f"span {self.span:.1f} decades (to the smallest eigenvalue positive beyond roundoff "
            f"{self.roundoff:.1e} × λmax); {self.resolved_span:.1f} decades above the noise floor",
            f"noise floor {self.noise_floor:.1e} × λmax ({self.noise_floor_source}): "
            f"{self.n_below_noise} eigenvalue(s) at or below it, {self.n_negative} negative, "
            f"{self.n_zero} within roundoff of zero",
        )
        rows = []
        for i in range(self.size):
            e = self.eigenparameter(i, top)
            rows.append(
                (
                    str(i + 1),
                    fmt(e.eigenvalue),
                    fmt(e.relative, 3),
                    "yes" if e.resolved else "no",
                    str(e).split(": ", 1)[1].replace(" (below the noise floor)", ""),
                )
            )
        title = f"Eigenvalue spectrum{' of ' + self.label if self.label else ''}"
        return Summary(
            (
                Table(
                    title,
                    ("#", "eigenvalue", "λ/λmax", "resolved", "largest loadings"),
                    tuple(rows),
                    notes,
                ),
            )
        )

    def plot(self, ax: Any = None):
        """The eigenvalue ladder of this spectrum; see `plot_spectrum`."""
        return plot_spectrum(self, ax=ax)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "names": list(self.names),
            "eigenvalues": self.eigenvalues.tolist(),
            "n": self.size,
            "counts": {str(k): v for k, v in self.counts.items()},
            "span": self.span,
            "resolved_span": self.resolved_span,
            "noise_floor": self.noise_floor,
            "noise_floor_source": self.noise_floor_source,
        }

    def __str__(self) -> str:
        return str(self.summary())

    def __repr__(self) -> str:
        return (
            f"Sloppiness({self.label or 'unnamed'}: N={self.size}, "
            + ", ".join(f"n{d:g}={c}" for d, c in self.counts.items())
            + f", span={self.span:.1f} decades)"
        )


def _as_matrix(matrix: Any, names: Any) -> tuple[np.ndarray, tuple[str, ...]]:
    try:
        m = np.array(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FimkitError(
            "The 'matrix' argument of sloppiness must be a FisherInformation or a square matrix of "
            f"numbers. Got {describe(matrix)} instead."
        ) from exc
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise FimkitError(
            f"The 'matrix' argument of sloppiness must be a non-empty square matrix. Got shape {m.shape}."
        )
    if names is None or isinstance(names, str):
        raise ParameterError(
            "sloppiness of a plain matrix needs its parameter names: pass names=[...] with one name "
            f"per row ({m.shape[0]}). Got {describe(names)}."
        )
    names = tuple(names)
    if len(names) != m.shape[0] or len(set(names)) != len(names):
        raise ParameterError(
            f"The 'names' argument of sloppiness must hold {m.shape[0]} distinct names, one per row "
            f"of the matrix. Got {len(names)} names ({len(set(names))} distinct)."
        )
    nonfinite = ~np.isfinite(m)
    if nonfinite.any():
        # Name the parameters whose whole row/column (or diagonal entry) is missing, else any.
        bad = nonfinite.all(axis=0) | nonfinite.all(axis=1) | np.diag(nonfinite)
        if not bad.any():
            bad = nonfinite.any(axis=0)
        which = [names[i] for i in np.flatnonzero(bad)]
        raise FimkitError(
            f"The matrix given to sloppiness has NaN or infinite entries in the rows/columns of "
            f"{len(which)} parameter(s) {which[:10]}{' ...' if len(which) > 10 else ''}; drop "
            "those rows and columns (and names) first."
        )
    scale = float(np.max(np.abs(m))) or 1.0
    asym = float(np.max(np.abs(m - m.T)))
    if asym > _SYMMETRY_RTOL * scale:
        raise FimkitError(
            "The matrix given to sloppiness must be symmetric. Got a largest asymmetry "
            f"|H - Hᵀ| = {asym:.3g} against a largest entry {scale:.3g}."
        )
    return 0.5 * (m + m.T), names


def sloppiness(
    matrix: FisherInformation | Any,
    names: Sequence[str] | None = None,
    *,
    decades: Sequence[float] = DEFAULT_DECADES,
    noise_floor: float | None = None,
    label: str | None = None,
) -> Sloppiness:
    """The normalised eigenvalue spectrum: span, counts, stiff and sloppy eigen-parameters.

    **Arguments:**
    - `matrix`: a `FisherInformation`, or a symmetric matrix (a stored χ² Hessian, say; its
      normalised spectrum is the information's, since the Hessian of χ² is twice it) with `names`.
    - `decades`: count the eigenvalues above 10^-d × the largest for each d (default 3 and 6).
    - `noise_floor`: relative level (to the largest eigenvalue) below which eigenvalues are not
      trusted. Default: the largest of the eigen-solver's roundoff N·ε, the magnitude of the most
      negative eigenvalue (noise in a matrix that should be positive semi-definite), and, for an
      information computed by an ODE solver, the square of the solver's rtol (the sensitivities carry
      relative errors near rtol, the information's eigenvalues near rtol² × λmax).
    - `label`: a name for plots and tables (default: the model's name, if known).

    **Returns:** a `Sloppiness`.
    """
    scale = None
    provenance: Mapping[str, Any] = {}
    if isinstance(matrix, FisherInformation):
        if names is not None and tuple(names) != matrix.names:
            raise ParameterError(
                "sloppiness takes the names of a FisherInformation from it; the 'names' given "
                f"{list(names)} differ from {list(matrix.names)}."
            )
        m, names, scale, provenance = matrix.matrix, matrix.names, matrix.scale, matrix.provenance
    else:
        m, names = _as_matrix(matrix, names)
    if isinstance(decades, str) or not np.iterable(decades) or not len(list(decades)):
        raise FimkitError(
            f"The 'decades' argument of sloppiness must be a list of numbers > 0. Got {describe(decades)}."
        )
    decades = [d.item() if isinstance(d, np.generic) else d for d in decades]
    for d in decades:
        if isinstance(d, bool) or not isinstance(d, int | float) or not np.isfinite(d) or d <= 0:
            raise FimkitError(
                f"The 'decades' argument of sloppiness must hold numbers > 0. Got {describe(d)} in {list(decades)}."
            )
    if noise_floor is not None and (
        isinstance(noise_floor, bool)
        or not isinstance(noise_floor, int | float)
        or not 0 <= noise_floor < 1
    ):
        raise FimkitError(
            "The 'noise_floor' argument of sloppiness must be a number in [0, 1) (relative to the "
            f"largest eigenvalue). Got {describe(noise_floor)} instead."
        )
    w, v = np.linalg.eigh(m)
    w, v = w[::-1], v[:, ::-1]
    if w[0] <= 0:
        raise FimkitError(
            f"The matrix given to sloppiness has no positive eigenvalue (largest {w[0]:.3g}): "
            "there is no spectrum to normalise."
        )
    n = w.size
    roundoff = n * _EPS * float(np.max(np.abs(w))) / float(w[0])
    candidates = [(roundoff, "eigen-solver roundoff N·ε")]
    if w[-1] < 0:
        candidates.append((-float(w[-1]) / float(w[0]), "most negative eigenvalue"))
    solver_rtol = provenance.get("rtol")
    if isinstance(solver_rtol, int | float) and not isinstance(solver_rtol, bool):
        candidates.append((float(solver_rtol) ** 2, f"solver rtol² ({solver_rtol:g}²)"))
    if noise_floor is not None:
        candidates = [(roundoff, "eigen-solver roundoff N·ε"), (float(noise_floor), "given")]
    floor, source = max(candidates, key=lambda c: c[0])
    if label is None:
        label = str(provenance.get("model", ""))
    return Sloppiness(
        tuple(names),
        w,
        v,
        tuple(float(d) for d in decades),
        roundoff,
        floor,
        source,
        label,
        scale,
    )


# -- the ladder plot ----------------------------------------------------------------------------------
def _as_spectra(spectra: Any, labels: Sequence[str] | None) -> list[Sloppiness]:
    if isinstance(spectra, Sloppiness | FisherInformation):
        items = [spectra]
    elif isinstance(spectra, Mapping):
        items = []
        for key, s in spectra.items():
            s = sloppiness(s) if isinstance(s, FisherInformation) else s
            if not isinstance(s, Sloppiness):
                raise FimkitError(
                    "plot_spectrum takes Sloppiness results or FisherInformation objects. "
                    f"Got {describe(s)} for {key!r}."
                )
            items.append(_relabel(s, str(key)))
    elif isinstance(spectra, Sequence) and not isinstance(spectra, str):
        items = list(spectra)
    else:
        raise FimkitError(
            "plot_spectrum takes a Sloppiness result, a FisherInformation, or a list or dict of "
            f"them. Got {describe(spectra)}."
        )
    out = []
    for s in items:
        s = sloppiness(s) if isinstance(s, FisherInformation) else s
        if not isinstance(s, Sloppiness):
            raise FimkitError(
                f"plot_spectrum takes Sloppiness results or FisherInformation objects. Got {describe(s)}."
            )
        out.append(s)
    if labels is not None:
        labels = list(labels)
        if len(labels) != len(out):
            raise FimkitError(
                f"The 'labels' argument of plot_spectrum must have one label per spectrum "
                f"({len(out)}). Got {len(labels)}."
            )
        out = [_relabel(s, str(lab)) for s, lab in zip(out, labels, strict=True)]
    return out


def _relabel(s: Sloppiness, label: str) -> Sloppiness:
    return Sloppiness(
        s.names, s.eigenvalues, s.eigenvectors, s.decades, s.roundoff, s.noise_floor,
        s.noise_floor_source, label, s.scale,
    )  # fmt: skip


def plot_spectrum(
    spectra: Any, ax: Any = None, *, labels: Sequence[str] | None = None, width: float = 0.6
):
    """Eigenvalue "ladders" in the style of Gutenkunst et al. (2007), one column per model.

    Each eigenvalue, divided by the largest of its model, is a horizontal line on a log axis; lines at
    or below the model's noise floor are grey, and the floor itself is a dotted line. Eigenvalues
    that are not positive cannot be drawn on a log axis: their number is given under the label.

    **Arguments:**
    - `spectra`: a `Sloppiness` or `FisherInformation`, a list of them, or a dict label → one.
    - `ax`: a matplotlib Axes to draw into; default a new figure (no pyplot state is touched).
    - `labels`: column labels (default each spectrum's `label`).

    **Returns:** the matplotlib `Figure`.
    """
    from matplotlib.figure import Figure

    items = _as_spectra(spectra, labels)
    if ax is None:
        fig = Figure(figsize=(1.0 + 0.9 * len(items), 4.5), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    lowest = 1.0
    ticks = []
    for i, s in enumerate(items):
        r = s.normalized
        ok = r > s.noise_floor
        faint = (r > 0) & ~ok
        left, right = i - width / 2, i + width / 2
        ax.hlines(r[ok], left, right, colors="C0", linewidth=1.2)
        if faint.any():
            ax.hlines(r[faint], left, right, colors="0.7", linewidth=0.8)
        ax.hlines(
            [s.noise_floor], left - 0.05, right + 0.05, colors="C3", linestyles=":", linewidth=1
        )
        positive = r[r > 0]
        lowest = min(lowest, float(np.min(positive)), s.noise_floor)
        nonpos = int(np.sum(r <= 0))
        ticks.append(
            f"{s.label or f'#{i + 1}'}\nN = {s.size}" + (f", {nonpos} ≤ 0" if nonpos else "")
        )
    ax.set_yscale("log")
    ax.set_xticks(
        range(len(items)),
        ticks,
        rotation=45 if len(items) > 3 else 0,
        ha="right" if len(items) > 3 else "center",
        fontsize=8,
    )
    ax.set_xlim(-0.6, len(items) - 0.4)
    ax.set_ylim(max(lowest, 1e-30) / 3, 3)
    ax.set_ylabel("λ / λmax")
    ax.set_title(
        "Eigenvalue spectra"
        if len(items) > 1
        else f"Eigenvalue spectrum{' of ' + items[0].label if items[0].label else ''}"
    )
    return fig


# -- prediction uncertainty along eigen-directions ---------------------------------------------------
@dataclass(frozen=True, eq=False)
class PredictionUncertainty:
    """The variance ∇gᵀ I⁻¹ ∇g of predictions g, split over the eigen-directions of I.

    With I = Σ λ_i v_i v_iᵀ, the variance is Σ_i (∇g·v_i)² / λ_i: a prediction is uncertain when its
    gradient has weight along a sloppy direction.

    **Fields:**
    - `names`, `scale`: the information's parameters and scale (the gradient is on that scale).
    - `gradient`: (m, p), one row per prediction.
    - `eigenvalues` (descending), `eigenvectors` (columns): the spectrum of the information.
    - `null`: (p,) which directions are discarded (eigenvalue ≤ `tolerance` = rtol × the largest).
    - `contributions`: (m, p) the term of each eigen-direction; inf where a prediction has weight
      (beyond `accuracy`, relative to its gradient) along a discarded direction.
    - `variance`: (m,) their sum: inf for a prediction the data cannot determine.
    """

    names: tuple[str, ...]
    scale: str
    gradient: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    null: np.ndarray
    tolerance: float
    accuracy: float
    contributions: np.ndarray
    variance: np.ndarray

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(self.variance)

    @property
    def identifiable(self) -> np.ndarray:
        """(m,) True for predictions with a finite variance."""
        return np.isfinite(self.variance)

    @property
    def share(self) -> np.ndarray:
        """(m, p) the fraction of each prediction's variance from each eigen-direction (NaN rows for
        predictions with infinite variance)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            out = self.contributions / self.variance[:, None]
        out[~self.identifiable] = np.nan
        return out

    def dominant(self, row: int = 0, n: int = 3) -> tuple[tuple[float, str], ...]:
        """The `n` eigen-directions contributing most to prediction `row`: (share, direction)."""
        share = self.share[row]
        if not np.isfinite(self.variance[row]):
            share = np.where(np.isinf(self.contributions[row]), 1.0, 0.0)
        order = np.argsort(-np.nan_to_num(share), kind="stable")[:n]
        return tuple(
            (float(share[i]), format_direction(self.eigenvectors[:, i], self.names, digits=2))
            for i in order
        )

    def summary(self, row: int = 0) -> Summary:
        lam_max = float(self.eigenvalues[0])
        rows = tuple(
            (
                str(i + 1),
                fmt(float(w)),
                fmt(float(w) / lam_max, 3),
                fmt(float(self.contributions[row, i])),
                fmt(float(self.share[row, i]), 3),
                format_direction(self.eigenvectors[:, i], self.names, digits=2),
            )
            for i, w in enumerate(self.eigenvalues)
        )
        var = float(self.variance[row])
        note = (
            f"variance {fmt(var)} (SE {fmt(float(np.sqrt(var)))}) on the {self.scale} scale"
            if np.isfinite(var)
            else "variance infinite: the prediction moves along a direction the data cannot see"
        )
        return Summary(
            (
                Table(
                    f"Prediction {row}: variance by eigen-direction",
                    ("#", "eigenvalue", "λ/λmax", "contribution", "share", "direction"),
                    rows,
                    (note,),
                ),
            )
        )

    def __str__(self) -> str:
        return str(self.summary())


def _gradient(fim: FisherInformation, g: Any) -> np.ndarray:
    p = fim.size
    if callable(g):
        import jax
        import jax.numpy as jnp

        log = fim.scale == "log"
        names = fim.names

        def h(u):
            x = jnp.exp(u) if log else u
            return jnp.asarray(g(dict(zip(names, x, strict=True))), dtype=jnp.float64)

        u0 = jnp.log(jnp.asarray(fim.theta)) if log else jnp.asarray(fim.theta)
        return np.asarray(jax.jacfwd(h)(u0), dtype=np.float64).reshape(-1, p)
    if isinstance(g, Mapping):
        unknown = [k for k in g if k not in fim.names]
        if unknown:
            raise ParameterError(
                f"The 'gradient' argument has unknown parameter names {unknown}; the parameters "
                f"are {list(fim.names)}."
            )
        return np.array([[float(g.get(n, 0.0)) for n in fim.names]])
    try:
        arr = np.array(g, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FimkitError(
            "The 'gradient' argument of prediction_uncertainty must be a vector, a matrix (one row "
            f"per prediction), a dict by name or a callable g(p). Got {describe(g)}."
        ) from exc
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != p:
        raise FimkitError(
            f"The 'gradient' argument of prediction_uncertainty must have {p} columns (parameters "
            f"{list(fim.names)}). Got shape {np.shape(g)}."
        )
    return arr


def prediction_uncertainty(
    fim: FisherInformation, gradient: Any, *, rtol: float | None = None
) -> PredictionUncertainty:
    """Variance of predictions, ∇gᵀ I⁻¹ ∇g, and the share of each eigen-direction of I.

    **Arguments:**
    - `fim`: the `FisherInformation` the parameters are (to be) estimated from.
    - `gradient`: ∇g on the information's scale (with respect to log θ for ``scale="log"``): a
      vector, a matrix with one row per prediction, a dict by parameter name (missing names are 0),
      or a callable ``g(p)`` of the parameter dict (written with `jax.numpy`; differentiated exactly
      at the information's θ on its scale).
    - `rtol`: directions with eigenvalue ≤ rtol × the largest are discarded (default as for rank).
      A prediction with weight along one of them has infinite variance: it is never silently
      computed from a pseudo-inverse.

    **Returns:** a `PredictionUncertainty`.
    """
    if not isinstance(fim, FisherInformation):
        raise FimkitError(
            f"The 'fim' argument of prediction_uncertainty must be a FisherInformation. Got {describe(fim)}."
        )
    rtol = check_rtol(rtol, "prediction_uncertainty")
    grad = _gradient(fim, gradient)
    if not np.all(np.isfinite(grad)):
        raise FimkitError(
            "The gradient given to prediction_uncertainty is not finite (NaN or inf)."
        )
    w, v, tol, keep = spectrum(fim.matrix, rtol)
    accuracy = null_space_accuracy(w, keep)
    w, v, keep = w[::-1], v[:, ::-1], keep[::-1]
    proj = grad @ v  # (m, p): ∇g · v_i
    norm = np.linalg.norm(grad, axis=1, keepdims=True)
    cutoff = max(10 * accuracy, 1e-8)
    contrib = np.zeros_like(proj)
    contrib[:, keep] = proj[:, keep] ** 2 / w[keep]
    hit = (~keep)[None, :] & (np.abs(proj) > cutoff * np.maximum(norm, np.finfo(float).tiny))
    contrib[hit] = np.inf
    return PredictionUncertainty(
        fim.names, fim.scale, grad, w, v, ~keep, tol, accuracy, contrib, contrib.sum(axis=1)
    )


__all__ = [
    "DEFAULT_DECADES",
    "EigenParameter",
    "PredictionUncertainty",
    "Sloppiness",
    "plot_spectrum",
    "prediction_uncertainty",
    "sloppiness",
]
