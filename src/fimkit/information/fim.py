"""The expected Fisher information of a design, and the result object everything else reads.

For Gaussian observations y ~ N(μ(θ), Σ(θ)) with diagonal Σ the information is exact and closed-form:

    I_ij = ∂_i μᵀ Σ⁻¹ ∂_j μ + ½ tr(Σ⁻¹ ∂_i Σ Σ⁻¹ ∂_j Σ),

with ∂μ/∂θ and ∂Σ/∂θ from forward-mode automatic differentiation through the model (and the ODE
solve). With Σ = σ²I fixed it is (1/σ²) Σ_k ∇h(t_k) ∇h(t_k)ᵀ. Each group of n subjects contributes n
times the information of one subject; independent experiments add.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import FimkitError, IdentifiabilityWarning, ParameterError, SingularFIMError, describe
from ..prediction import Setup

SCALES = ("lin", "log")
# Default relative tolerance for the numerical rank: eigenvalues below DEFAULT_RTOL × the largest
# count as zero. Sensitivities from a solve at rtol 1e-8 leave a noise floor near 1e-16..1e-14 ×
# the largest eigenvalue (see docs/fisher_information.md); real sloppy directions of biological
# models reach 1e-12, so the default sits between the two. Pass `rtol=` to change it.
DEFAULT_RTOL = 1e-13


def _check_scale(scale: Any, argument: str = "scale") -> str:
    if scale not in SCALES:
        raise FimkitError(
            f"The '{argument}' argument must be 'lin' or 'log' (natural log). Got {describe(scale)}."
        )
    return scale


def _check_rtol(rtol: Any) -> float:
    if rtol is None:
        return DEFAULT_RTOL
    if isinstance(rtol, bool) or not isinstance(rtol, int | float | np.number) or not 0 < rtol < 1:
        raise FimkitError(f"The 'rtol' argument must be a number in (0, 1). Got {describe(rtol)}.")
    return float(rtol)


def format_direction(vector: np.ndarray, names: Sequence[str], digits: int = 3) -> str:
    """A direction in parameter space in words: '0.577·CL + 0.577·V + 0.577·D'."""
    v = np.asarray(vector, dtype=float)
    k = int(np.argmax(np.abs(v)))
    v = v * np.sign(v[k]) if v[k] != 0 else v
    terms = []
    for n, c in zip(names, v, strict=True):
        if abs(c) >= 10 ** (-digits) * np.max(np.abs(v)):
            terms.append(f"{'-' if c < 0 else '+'} {abs(c):.{digits}g}·{n}")
    text = " ".join(terms)
    return text[2:] if text.startswith("+ ") else "-" + text[2:]


class Eigen(NamedTuple):
    """Eigen-decomposition of a Fisher information: `values` ascending, `vectors` as columns."""

    values: np.ndarray
    vectors: np.ndarray
    names: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class FisherInformation:
    """A Fisher information matrix with its parameter names, the point and scale it was computed at.

    **Fields:**
    - `matrix`: the (p, p) information, on `scale`.
    - `names`: parameter names, in matrix order.
    - `theta`: the parameter values (always on the linear scale).
    - `scale`: ``"lin"`` (information about θ) or ``"log"`` (about log θ).
    - `provenance`: how it was computed (model, design, noise, solver, fimkit version).
    - `mc_standard_error`: for a Monte Carlo estimate, the standard error of each entry.
    """

    matrix: np.ndarray
    names: tuple[str, ...]
    theta: np.ndarray
    scale: str = "lin"
    provenance: Mapping[str, Any] = field(default_factory=dict)
    mc_standard_error: np.ndarray | None = None

    def __post_init__(self) -> None:
        m = np.array(self.matrix, dtype=np.float64)
        names = tuple(self.names)
        if m.ndim != 2 or m.shape != (len(names), len(names)):
            raise FimkitError(
                f"The 'matrix' of FisherInformation must be square with one row per name "
                f"({len(names)}). Got shape {m.shape}."
            )
        if not np.all(np.isfinite(m)):
            raise FimkitError("The 'matrix' of FisherInformation must be finite. Got NaN or inf.")
        m = 0.5 * (m + m.T)
        m.setflags(write=False)
        th = np.array(self.theta, dtype=np.float64).reshape(-1)
        if th.size != len(names):
            raise FimkitError(
                f"The 'theta' of FisherInformation must have {len(names)} values. Got {th.size}."
            )
        th.setflags(write=False)
        object.__setattr__(self, "matrix", m)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "theta", th)
        object.__setattr__(self, "scale", _check_scale(self.scale))
        object.__setattr__(self, "provenance", dict(self.provenance))
        if self.mc_standard_error is not None:
            se = np.array(self.mc_standard_error, dtype=np.float64)
            se.setflags(write=False)
            object.__setattr__(self, "mc_standard_error", se)

    @classmethod
    def _checked(cls, matrix, names, theta, scale, provenance) -> FisherInformation:
        """From values fimkit computed itself (a finite square matrix, float64 θ of the same
        size, a checked scale): the same object as the constructor's, without its checks."""
        m = 0.5 * (matrix + matrix.T)
        m.setflags(write=False)
        th = np.array(theta, dtype=np.float64)
        th.setflags(write=False)
        self = object.__new__(cls)
        for name, value in (
            ("matrix", m),
            ("names", tuple(names)),
            ("theta", th),
            ("scale", scale),
            ("provenance", provenance),
            ("mc_standard_error", None),
        ):
            object.__setattr__(self, name, value)
        return self

    # -- names ---------------------------------------------------------------------------------------
    def _indices(self, names: Any, argument: str) -> list[int]:
        if isinstance(names, str):
            names = [names]
        names = list(names)
        unknown = [n for n in names if n not in self.names]
        if unknown or not names:
            raise ParameterError(
                f"The '{argument}' argument must name parameters of this information "
                f"{list(self.names)}. Got {names}."
            )
        if len(set(names)) != len(names):
            raise ParameterError(f"The '{argument}' argument has duplicate names: {names}.")
        return [self.names.index(n) for n in names]

    @property
    def size(self) -> int:
        return len(self.names)

    # -- spectrum, rank, null space ------------------------------------------------------------------
    def eigen(self) -> Eigen:
        """Eigenvalues (ascending) and eigenvectors (columns) of the matrix."""
        w, v = np.linalg.eigh(self.matrix)
        return Eigen(w, v, self.names)

    def _tolerance(self, rtol: float) -> float:
        w = np.linalg.eigvalsh(self.matrix)
        return rtol * max(float(np.max(np.abs(w))), np.finfo(float).tiny)

    def rank(self, rtol: float | None = None) -> int:
        """Numerical rank: eigenvalues above `rtol` × the largest (default `DEFAULT_RTOL`)."""
        rtol = _check_rtol(rtol)
        w = np.linalg.eigvalsh(self.matrix)
        return int(np.sum(w > self._tolerance(rtol)))

    def null_space(self, rtol: float | None = None) -> np.ndarray:
        """Orthonormal basis (columns) of the directions whose eigenvalue is below the tolerance.

        Each column is signed so that its largest component is positive.
        """
        rtol = _check_rtol(rtol)
        w, v = np.linalg.eigh(self.matrix)
        basis = v[:, w <= self._tolerance(rtol)]
        for j in range(basis.shape[1]):
            k = int(np.argmax(np.abs(basis[:, j])))
            basis[:, j] *= np.sign(basis[k, j])
        return basis

    # -- inverse and what follows --------------------------------------------------------------------
    def cov(self, *, pinv: bool = False, rtol: float | None = None) -> np.ndarray:
        """The Cramér–Rao bound on the covariance: the inverse of the matrix.

        A singular information raises `SingularFIMError` naming the null directions; pass
        ``pinv=True`` to get the Moore–Penrose pseudo-inverse instead (it bounds only the identifiable
        combinations, not the parameters).
        """
        rtol = _check_rtol(rtol)
        w, v = np.linalg.eigh(self.matrix)
        tol = self._tolerance(rtol)
        keep = w > tol
        if not keep.all() and not pinv:
            null = v[:, ~keep]
            dirs = "; ".join(format_direction(null[:, j], self.names) for j in range(null.shape[1]))
            raise SingularFIMError(
                f"The Fisher information is singular (rank {int(keep.sum())} of {self.size}, "
                f"eigenvalues below {tol:.3g} = rtol {rtol:g} × the largest): the data cannot "
                f"determine the direction(s) [{dirs}] on the {self.scale} scale. Fix or drop a "
                "parameter along it (FisherInformation.select), add an experiment that informs it, "
                "or ask for the pseudo-inverse explicitly with cov(pinv=True).",
                null_directions=null,
            )
        if keep.all() and w[0] < 1e3 * tol:
            warnings.warn(
                f"The Fisher information is nearly singular (condition number {w[-1] / w[0]:.3g}); "
                "its inverse is dominated by the direction "
                f"{format_direction(v[:, 0], self.names)}.",
                IdentifiabilityWarning,
                stacklevel=2,
            )
        inv = (v[:, keep] / w[keep]) @ v[:, keep].T
        return 0.5 * (inv + inv.T)

    def cov_of(self, gradients: np.ndarray, *, rtol: float | None = None) -> np.ndarray:
        """G I⁻¹ Gᵀ: the delta-method covariance of quantities with gradients G (rows, on this
        information's scale).

        A singular information still bounds a quantity whose gradient has no component along the
        null space (an identifiable combination, such as D/V in the one-compartment bolus model):
        then the pseudo-inverse gives the exact answer. A gradient with a component along the null
        space raises `SingularFIMError` naming the direction.
        """
        g = np.atleast_2d(np.asarray(gradients, dtype=np.float64))
        rtol = _check_rtol(rtol)
        w, v = np.linalg.eigh(self.matrix)
        keep = w > self._tolerance(rtol)
        if not keep.all():
            null = v[:, ~keep]
            leak = np.linalg.norm(g @ null, axis=1)
            scale = np.maximum(np.linalg.norm(g, axis=1), np.finfo(float).tiny)
            if np.any(leak > 1e-6 * scale):
                self.cov()  # raises SingularFIMError with the null directions named
        inv = (v[:, keep] / w[keep]) @ v[:, keep].T
        out = g @ inv @ g.T
        return 0.5 * (out + out.T)

    def standard_errors(self) -> dict[str, float]:
        """Lower bounds on the standard errors, sqrt([I⁻¹]_jj), on this information's scale."""
        return dict(zip(self.names, np.sqrt(np.diag(self.cov())).tolist(), strict=True))

    def rse(self) -> dict[str, float]:
        """Relative standard errors in percent: SE(θ_j)/|θ_j| × 100 (first order).

        On the log scale this is SE(log θ_j) × 100, the same quantity to first order.
        """
        se = np.sqrt(np.diag(self.cov()))
        rel = se if self.scale == "log" else se / np.abs(self.theta)
        return dict(zip(self.names, (100 * rel).tolist(), strict=True))

    def correlation(self) -> np.ndarray:
        """Correlation matrix of the Cramér–Rao covariance."""
        c = self.cov()
        d = np.sqrt(np.diag(c))
        return c / np.outer(d, d)

    def crlb(self, name: str) -> float:
        """The Cramér–Rao lower bound on the variance of an unbiased estimator of `name`."""
        (j,) = self._indices([name], "name")
        return float(self.cov()[j, j])

    def conf_int(self, alpha: float = 0.05):
        """Wald intervals θ̂ ± z·sqrt([I⁻¹]_jj); see `fimkit.wald_intervals`."""
        from ..inference.intervals import wald_intervals

        return wald_intervals(self, alpha=alpha)

    # -- sub-problems ---------------------------------------------------------------------------------
    def select(self, names: Sequence[str]) -> FisherInformation:
        """The information about `names` when every other parameter is known (a sub-matrix)."""
        idx = self._indices(names, "names")
        F = self._derived(self.matrix[np.ix_(idx, idx)], idx, "select")
        if self.mc_standard_error is not None:
            se = self.mc_standard_error[np.ix_(idx, idx)]
            F = FisherInformation(F.matrix, F.names, F.theta, F.scale, F.provenance, se)
        return F

    def marginal(self, names: Sequence[str]) -> FisherInformation:
        """The information left for `names` when the other parameters are estimated too.

        The Schur complement I_aa − I_ab I_bb⁻¹ I_ba: its inverse is the `names` block of the full
        inverse, so estimating nuisance parameters can only widen the bounds of the others.
        """
        idx = self._indices(names, "names")
        rest = [i for i in range(self.size) if i not in idx]
        m = self.matrix[np.ix_(idx, idx)]
        if rest:
            nuisance = self.select([self.names[i] for i in rest])
            try:
                inv = nuisance.cov()
            except SingularFIMError as exc:
                raise SingularFIMError(
                    "Cannot take the marginal information: the information about the nuisance "
                    f"parameters {[self.names[i] for i in rest]} is singular. {exc}",
                    exc.null_directions,
                ) from exc
            b = self.matrix[np.ix_(idx, rest)]
            m = m - b @ inv @ b.T
        return self._derived(m, idx, "marginal")

    def _derived(self, m: np.ndarray, idx: list[int], how: str) -> FisherInformation:
        prov = dict(self.provenance)
        prov["derived"] = [*prov.get("derived", []), f"{how}({[self.names[i] for i in idx]})"]
        return FisherInformation(m, [self.names[i] for i in idx], self.theta[idx], self.scale, prov)

    def to_scale(self, scale: str) -> FisherInformation:
        """The same information on another scale, by the Jacobian: I_log = D I_lin D, D = diag(θ)."""
        scale = _check_scale(scale)
        if scale == self.scale:
            return self
        if "coordinates" in self.provenance:
            # theta holds the parameters on their PEtab scales (log10 k, ...), not the parameters:
            # the Jacobian of another scale needs the problem.
            raise ParameterError(
                f"This information is about parameters on their PEtab scales "
                f"({list(self.names)}); it does not convert to scale={scale!r} by itself. Use "
                f"problem.fisher_information(x, scale={scale!r}) instead."
            )
        if np.any(self.theta <= 0):
            bad = {n: float(t) for n, t in zip(self.names, self.theta, strict=True) if t <= 0}
            raise ParameterError(
                f"Converting a Fisher information to the log scale needs positive parameters. Got {bad}."
            )
        d = self.theta if scale == "log" else 1.0 / self.theta
        m = self.matrix * np.outer(d, d)
        prov = dict(self.provenance)
        prov["derived"] = [*prov.get("derived", []), f"to_scale({scale!r})"]
        se = None if self.mc_standard_error is None else self.mc_standard_error * np.outer(d, d)
        return FisherInformation(m, self.names, self.theta, scale, prov, se)

    def __add__(self, other: Any) -> FisherInformation:
        if not isinstance(other, FisherInformation):
            return NotImplemented
        if other.names != self.names:
            raise ParameterError(
                "Only informations about the same parameters add. Got names "
                f"{list(self.names)} and {list(other.names)}."
            )
        if other.scale != self.scale:
            other = other.to_scale(self.scale)
        if not np.allclose(other.theta, self.theta, rtol=1e-10, atol=0.0):
            raise ParameterError(
                "Only informations at the same parameter values add. Got theta "
                f"{self.theta.tolist()} and {other.theta.tolist()}."
            )
        prov: dict[str, Any] = {"sum_of": [self.provenance, other.provenance]}
        for x in (self, other):
            if "coordinates" in x.provenance:
                prov["coordinates"] = x.provenance["coordinates"]
        se = None
        if self.mc_standard_error is not None or other.mc_standard_error is not None:
            se = np.sqrt(
                sum(
                    x.mc_standard_error**2 for x in (self, other) if x.mc_standard_error is not None
                )
            )
            return FisherInformation(
                self.matrix + other.matrix, self.names, self.theta, self.scale, prov, se
            )
        return FisherInformation(
            self.matrix + other.matrix, self.names, self.theta, self.scale, prov
        )

    def __radd__(self, other: Any) -> FisherInformation:
        if isinstance(other, int) and other == 0:  # sum([F1, F2, ...])
            return self
        return NotImplemented

    # -- presentation --------------------------------------------------------------------------------
    def summary(self, alpha: float = 0.05):
        """A table of estimates, standard errors, RSE and Wald intervals, with the spectrum."""
        from ..report.tables import fim_summary

        return fim_summary(self, alpha=alpha)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python data (JSON-serialisable)."""
        return {
            "names": list(self.names),
            "theta": self.theta.tolist(),
            "scale": self.scale,
            "matrix": self.matrix.tolist(),
            "eigenvalues": np.linalg.eigvalsh(self.matrix).tolist(),
            "rank": self.rank(),
            "provenance": _jsonable(self.provenance),
        }

    def __repr__(self) -> str:
        return (
            f"FisherInformation(names={list(self.names)}, scale={self.scale!r}, "
            f"rank={self.rank()}/{self.size})"
        )


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, float | int | str | bool) or x is None:
        return x
    return str(x)


def _dispersion_varies(setup: Setup, theta, n_obs: int) -> bool:
    """Whether the noise model's dispersion can depend on θ (through f or noise parameters).

    Decided from the structure of the noise map alone (a trace with abstract values, no solve):
    for additive noise with a known σ it cannot, and the dispersion term of the information is
    left out of the program instead of being computed from zeros.
    """
    outputs = setup.observation_outputs

    def disp(th, f):
        p = dict(zip(setup.names, th, strict=True))
        return setup.noise.location_dispersion(f, p, outputs)[1]

    closed = jax.make_jaxpr(disp)(
        jax.ShapeDtypeStruct(theta.shape, theta.dtype), jax.ShapeDtypeStruct((n_obs,), theta.dtype)
    )
    return _reaches(closed.jaxpr)


def _reaches(jaxpr) -> bool:
    """Whether any output of `jaxpr` is computed from its inputs (conservative on sub-programs)."""
    from jax.extend.core import Literal

    live = set(jaxpr.invars)
    for eqn in jaxpr.eqns:
        if any(not isinstance(v, Literal) and v in live for v in eqn.invars):
            live.update(eqn.outvars)
    return any(not isinstance(v, Literal) and v in live for v in jaxpr.outvars)


def information_terms(setup: Setup, theta, times, dose_values):
    """The pieces of the exact information, per observation, from one forward-mode pass.

    Returns (S, G, w_loc, w_disp, loc, disp, status): S = ∂loc/∂θ and G = ∂disp/∂θ (rows per
    flattened observation; G is None when the dispersion cannot depend on θ, e.g. additive noise
    with a known σ), the noise model's per-observation information about (loc, disp), and what
    they were computed from. I = Sᵀ diag(n·w_loc) S + Gᵀ diag(n·w_disp) G. Shared by the FIM and
    by the design optimiser, which needs the terms per sampling time.
    """
    theta = jnp.asarray(theta)
    n_obs = int(setup.weights().size)
    f0, F, status = setup.outputs_and_jacobian(theta, times, dose_values)
    outputs = setup.observation_outputs

    def noise_map(th):
        # The predictions are linear in θ around θ with their Jacobian F: the same values, and
        # exact first derivatives, so AD here goes through the noise model only. (θ itself, not
        # a stopped copy of th, so derivatives of the result with respect to θ stay exact.)
        f = f0 + F @ (th - theta)
        return setup.noise.location_dispersion(f, dict(zip(setup.names, th, strict=True)), outputs)

    loc, disp = setup.noise.location_dispersion(
        f0, dict(zip(setup.names, theta, strict=True)), outputs
    )
    if _dispersion_varies(setup, theta, n_obs):
        jac = jax.jacfwd(lambda th: jnp.concatenate(noise_map(th)))(theta)
        S, G = jac[:n_obs], jac[n_obs:]
    else:
        S, G = jax.jacfwd(lambda th: noise_map(th)[0])(theta), None
    w_loc, w_disp = setup.noise._weights(loc, disp)
    return S, G, w_loc, w_disp, loc, disp, status


def _fim_program(setup: Setup):
    weights = jnp.asarray(setup.weights())

    def run(theta, times, dose_values):
        S, G, w_loc, w_disp, loc, _, status = information_terms(setup, theta, times, dose_values)
        matrix = S.T @ (S * (weights * w_loc)[:, None])
        if G is not None:
            matrix = matrix + G.T @ (G * (weights * w_disp)[:, None])
        # Only a flag comes back: the host recomputes loc and disp (to name the degenerate
        # observation) when it says something is off. Everything comes back in one vector (see
        # `unpack_fim`): each output costs a buffer and a transfer on every call.
        noise_ok = jnp.all(jnp.isfinite(loc) & jnp.isfinite(w_loc) & jnp.isfinite(w_disp))
        finite = jnp.all(jnp.isfinite(matrix))
        flags = jnp.stack([noise_ok, finite]).astype(matrix.dtype)
        return jnp.concatenate([matrix.ravel(), status.astype(matrix.dtype), flags])

    return run


def unpack_fim(packed: Any, n_params: int) -> tuple[np.ndarray, np.ndarray, bool, bool]:
    """(matrix, statuses, noise_ok, finite) from the one vector `_fim_program` returns."""
    packed = np.asarray(packed)
    k = n_params * n_params
    matrix = packed[:k].reshape(n_params, n_params)
    return matrix, packed[k:-2].astype(int), bool(packed[-2]), bool(packed[-1])


METHODS = ("exact", "score-covariance", "neg-hessian")


def _mc_program(setup: Setup, method: str, n_samples: int):
    from ..likelihood import Expansion

    n_obs = int(setup.weights().size)
    index = tuple(range(n_obs))
    weights = jnp.asarray(setup.weights())
    group = np.concatenate(
        [np.full(g.times.size * len(setup.output_index[i]), i) for i, g in enumerate(setup.groups)]
    )
    n_per_group = jnp.asarray([g.n for g in setup.groups], dtype=jnp.float64)
    n_groups = len(setup.groups)
    outputs = setup.observation_outputs

    def run(f, J, H, theta, key):
        exp = Expansion(setup, theta, f, J, H)
        p = dict(zip(setup.names, theta, strict=True))
        d0 = jnp.zeros_like(theta)

        def one(k):
            y = setup.noise.sample(k, f, p, outputs)
            if method == "score-covariance":
                G = jax.jacfwd(lambda d: exp.per_observation(d, y, index))(d0)
                s = jax.ops.segment_sum(G, jnp.asarray(group), num_segments=n_groups)
                return (s.T * n_per_group) @ s
            return -jax.hessian(lambda d: jnp.sum(weights * exp.per_observation(d, y, index)))(d0)

        draws = jax.lax.map(one, jax.random.split(key, n_samples), batch_size=256)
        return jnp.mean(draws, axis=0), jnp.std(draws, axis=0, ddof=1) / jnp.sqrt(n_samples)

    return run


def fisher_information(
    model: Any,
    theta: Any,
    design: Any,
    *,
    noise: Any,
    scale: str = "lin",
    method: str = "exact",
    n_samples: int = 2000,
    key: Any = 0,
) -> FisherInformation:
    """The expected Fisher information of `design` about the parameters of `model` at `theta`.

    **Arguments:**
    - `model`: an `AnalyticModel` or `ODEModel`.
    - `theta`: a dict keyed by parameter name, or a vector in parameter order (the model's
      parameters, then noise parameters the model does not have). Always linear-scale values.
    - `design`: a `Design` (or a `Group`, or a list of times).
    - `noise`: a noise model (`Gaussian`, `Proportional`, `Combined`, `LogNormal`, `Poisson`,
      `NegativeBinomial`, `StudentT`, `Laplace`, `Custom`); a number means additive σ.
    - `scale`: ``"lin"`` for information about θ, ``"log"`` about log θ.
    - `method`: ``"exact"`` (closed form; every built-in noise model except a negative binomial
      with estimated size), or a Monte Carlo estimate from `n_samples` simulated data sets drawn
      with the fixed `key` (an int or a JAX key): ``"score-covariance"`` (E[s sᵀ]) or
      ``"neg-hessian"`` (−E[∇²ℓ]). Monte Carlo results carry `mc_standard_error`.

    **Returns:** a `FisherInformation`.
    """
    scale = _check_scale(scale)
    if method not in METHODS:
        raise FimkitError(
            f"The 'method' argument must be one of {list(METHODS)}. Got {describe(method)}."
        )
    setup = Setup.build(model, design, noise)
    th = setup.theta(theta, positive=(scale == "log"))
    provenance = dict(setup.provenance)
    mc_se = None
    if method == "exact":
        if not setup.noise.closed_form:
            raise FimkitError(
                f"The noise model {setup.noise} has no closed-form Fisher information; use "
                "method='score-covariance' or method='neg-hessian' (Monte Carlo, with n_samples= "
                "and key=)."
            )
        program = setup.compiled("fim", _fim_program)
        packed = program(th, *setup.inputs)
        matrix, status, noise_ok, finite = unpack_fim(packed, len(setup.names))
        setup.check_status(status, th)
        if not noise_ok:
            loc_disp = setup.compiled("loc-disp", lambda s: s.location_dispersion)
            setup.check_noise(*loc_disp(th, *setup.inputs)[:2])
        provenance["method"] = "exact (closed form, forward-mode AD)"
        if finite:  # the common case, with nothing left to check
            if scale == "log":  # I_log = D I_lin D, D = diag(θ) (θ > 0 was checked above)
                matrix = matrix * th[:, None] * th[None, :]
                provenance["derived"] = ["to_scale('log')"]
            return FisherInformation._checked(matrix, setup.names, th, scale, provenance)
    else:
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
            raise FimkitError(
                f"The 'n_samples' argument must be an integer >= 2. Got {describe(n_samples)}."
            )
        if method == "neg-hessian" and not setup.noise.smooth:
            raise FimkitError(
                f"The noise model {setup.noise} is not twice differentiable, so the information is "
                "not the negative expected Hessian; use method='exact' or 'score-covariance'."
            )
        if isinstance(key, int | np.integer):
            key = jax.random.PRNGKey(int(key))
        from ..likelihood import Expansion

        exp = Expansion.at(setup, th)
        program = setup.compiled(
            f"mc-{method}-{n_samples}", lambda s: _mc_program(s, method, n_samples)
        )
        matrix, mc_se = program(exp.f, exp.J, exp.H, jnp.asarray(th), key)
        mc_se = np.asarray(mc_se)
        provenance["method"] = f"Monte Carlo ({method}, {n_samples} samples)"
    matrix = np.asarray(matrix)
    if not np.all(np.isfinite(matrix)):
        raise FimkitError(
            "The Fisher information is not finite at theta="
            f"{dict(zip(setup.names, th.tolist(), strict=True))}: the sensitivities overflowed. "
            "Check the parameter values, or tighten the solver tolerances."
        )
    if scale == "log":  # I_log = D I_lin D, D = diag(θ) (θ > 0 was checked above)
        matrix = matrix * np.outer(th, th)
        mc_se = None if mc_se is None else mc_se * np.outer(th, th)
        provenance["derived"] = ["to_scale('log')"]
    return FisherInformation(matrix, setup.names, th, scale, provenance, mc_se)


__all__ = ["DEFAULT_RTOL", "Eigen", "FisherInformation", "fisher_information", "format_direction"]
