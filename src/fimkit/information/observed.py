"""Observed information J(θ; y) = −∇²ℓ, the outer product of scores (OPG), and the sandwich.

The observed information reflects the curvature of the log-likelihood of the data actually
collected; the expected information averages it over data sets. The sandwich covariance
J⁻¹ K J⁻¹ (K the OPG) stays valid when the noise model is wrong; when it is right, K ≈ J and the
sandwich agrees with the model-based J⁻¹.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..likelihood import Likelihood
from .fim import FisherInformation, _check_scale


def _provenance(lik: Likelihood, what: str) -> dict[str, Any]:
    from .. import __version__

    return {
        "model": lik.setup.model.name,
        "noise": str(lik.setup.noise),
        "design": lik.setup.design.describe(),
        "method": what,
        "n_values": lik.data.n_values,
        "fimkit": __version__,
        **lik.setup.model._solver_info(),
    }


def _terms(model: Any, theta: Any, data: Any, noise: Any, scale: str):
    scale = _check_scale(scale)
    lik = Likelihood.build(model, data, noise)
    th = lik.setup.theta(theta, positive=(scale == "log"))
    _, G, H = lik.evaluate(th)
    if scale == "log":
        # Chain rule for u = log θ: ∂ℓ/∂u = θ ∂ℓ/∂θ; ∂²ℓ/∂u² = D H D + diag(θ ∘ ∂ℓ/∂θ).
        g = G.sum(axis=0)
        H = H * np.outer(th, th) + np.diag(th * g)
        G = G * th
    return lik, th, G, H


def observed_information(
    model: Any, theta: Any, data: Any, *, noise: Any, scale: str = "lin"
) -> FisherInformation:
    """The observed information −∇²ℓ(θ; y) of `data`, exact (automatic differentiation).

    On the log scale the Hessian is taken with respect to log θ (it includes the score term,
    which vanishes at the maximum-likelihood estimate).
    """
    lik, th, _, H = _terms(model, theta, data, noise, scale)
    return FisherInformation(-H, lik.names, th, scale, _provenance(lik, "observed (−Hessian)"))


def opg_information(
    model: Any, theta: Any, data: Any, *, noise: Any, scale: str = "lin"
) -> FisherInformation:
    """The outer product of the per-observation scores, Σ_k s_k s_kᵀ (the OPG or BHHH estimate)."""
    lik, th, G, _ = _terms(model, theta, data, noise, scale)
    return FisherInformation(
        G.T @ G, lik.names, th, scale, _provenance(lik, "outer product of scores")
    )


def sandwich_covariance(
    model: Any, theta: Any, data: Any, *, noise: Any, scale: str = "lin"
) -> np.ndarray:
    """The robust (sandwich) covariance J⁻¹ K J⁻¹, J observed information, K the OPG.

    Raises `SingularFIMError` when the observed information is singular.
    """
    lik, th, G, H = _terms(model, theta, data, noise, scale)
    J = FisherInformation(-H, lik.names, th, scale, _provenance(lik, "observed (−Hessian)"))
    Jinv = J.cov()
    return Jinv @ (G.T @ G) @ Jinv


__all__ = ["observed_information", "opg_information", "sandwich_covariance"]
