"""Log-likelihood, score and Hessian of (model, θ, data, noise), by automatic differentiation.

Everything here is computed from one local expansion of the predictions at θ: f(θ), its Jacobian
and its second derivatives (forward mode through the model and the solver). The log-likelihood of
any data near θ is then Σ logpdf(y, f + J d + ½ dᵀ H d, θ + d), whose value, gradient and Hessian
at d = 0 are exactly those of the true log-likelihood. One solve serves any number of data sets,
which is what the Monte Carlo Fisher information and simulation studies need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._jax import jit
from .data import Data
from .errors import DataError, describe
from .prediction import Setup


def _second_order_program(setup: Setup):
    def run(theta, times, dose_values):
        # One nested forward pass: the inner Jacobian carries f and the status out as aux.
        def f(th):
            out, status = setup.outputs_flat(th, times, dose_values)
            return out, (out, status)

        def jac(th):
            J, aux = jax.jacfwd(f, has_aux=True)(th)
            return J, (J, *aux)

        H, (J, f0, status) = jax.jacfwd(jac, has_aux=True)(theta)
        return f0, J, H, status

    return run


@dataclass(frozen=True, eq=False)
class Expansion:
    """Predictions and their first and second derivatives at θ (flattened observation order)."""

    setup: Setup
    theta: np.ndarray
    f: Any
    J: Any
    H: Any

    @classmethod
    def at(cls, setup: Setup, theta: np.ndarray) -> Expansion:
        f, J, H, status = setup.compiled("expansion", _second_order_program)(
            theta, setup.times(), setup.dose_values
        )
        setup.check_status(status, theta)
        return cls(setup, theta, f, J, H)

    def per_observation(self, d, y, index):
        """logpdf of observations y (predictions f[index]) at θ + d, to second order in d."""
        th = jnp.asarray(self.theta) + d
        f = self.f + self.J @ d + 0.5 * jnp.einsum("kij,i,j->k", self.H, d, d)
        p = dict(zip(self.setup.names, th, strict=True))
        outputs = tuple(self.setup.observation_outputs[k] for k in index)
        return self.setup.noise.logpdf(y, f[jnp.asarray(index)], p, outputs)


def _long(setup: Setup, data: Data) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Data as long vectors: values, observation index into f, mask, subject id."""
    ys, idx, masks, subj = [], [], [], []
    offset, sid = 0, 0
    for gi, g in enumerate(setup.groups):
        size = g.times.size * len(setup.output_index[gi])
        vals = data.values[gi].reshape(data.values[gi].shape[0], -1)
        mask = data.mask[gi].reshape(vals.shape)
        for s in range(vals.shape[0]):
            ys.append(vals[s])
            idx.append(offset + np.arange(size))
            masks.append(mask[s])
            subj.append(np.full(size, sid))
            sid += 1
        offset += size
    return np.concatenate(ys), np.concatenate(idx), np.concatenate(masks), np.concatenate(subj)


@dataclass(frozen=True, eq=False)
class Likelihood:
    """A (model, data, noise) triple ready to evaluate at any θ: value, score, Hessian, OPG."""

    setup: Setup
    data: Data
    y: np.ndarray
    index: np.ndarray
    mask: np.ndarray
    subject: np.ndarray

    @classmethod
    def build(cls, model: Any, data: Any, noise: Any) -> Likelihood:
        if not isinstance(data, Data):
            raise DataError(f"The 'data' argument must be a fimkit.Data. Got {describe(data)}.")
        setup = Setup.build(model, data.design, noise)
        y, index, mask, subject = _long(setup, data)
        observed = y[mask]
        problem = setup.noise.data_problem(observed)
        if problem:
            raise DataError(f"The data do not fit the noise model {setup.noise}: {problem}.")
        # Dropped values are replaced by a value inside every support; their weight is zero.
        y = np.where(mask, y, 1.0)
        return cls(setup, data, y, index, mask, subject)

    @property
    def names(self) -> tuple[str, ...]:
        return self.setup.names

    def _program(self):
        key = ("likelihood-terms", *self.setup.key, self.index.tobytes(), self.mask.tobytes())
        cache = self.setup.model._cache
        if key not in cache:
            index = tuple(int(k) for k in self.index)
            weights = jnp.asarray(self.mask, dtype=jnp.float64)

            def terms(exp_f, exp_J, exp_H, theta, y):
                exp = Expansion(self.setup, theta, exp_f, exp_J, exp_H)

                def obs(d):
                    return weights * exp.per_observation(d, y, index)

                d0 = jnp.zeros_like(theta)
                per_obs = obs(d0)
                G = jax.jacfwd(obs)(d0)
                Hs = jax.hessian(lambda d: jnp.sum(obs(d)))(d0)
                return jnp.sum(per_obs), G, Hs

            cache[key] = jit(terms)
        return cache[key]

    def evaluate(self, theta: np.ndarray):
        """(log-likelihood, per-observation scores (n_obs, p), Hessian) at θ."""
        exp = Expansion.at(self.setup, theta)
        value, G, H = self._program()(exp.f, exp.J, exp.H, jnp.asarray(theta), jnp.asarray(self.y))
        return float(value), np.asarray(G), np.asarray(H)


def loglike(model: Any, theta: Any, data: Data, *, noise: Any) -> float:
    """The log-likelihood ℓ(θ; y) of `data` under `model` with observation `noise`."""
    lik = Likelihood.build(model, data, noise)
    value, _, _ = lik.evaluate(lik.setup.theta(theta))
    return value


def score(model: Any, theta: Any, data: Data, *, noise: Any) -> np.ndarray:
    """The score ∇θ ℓ(θ; y), in the order of `fk.parameter_names(model, noise)`."""
    lik = Likelihood.build(model, data, noise)
    _, G, _ = lik.evaluate(lik.setup.theta(theta))
    return G.sum(axis=0)


def hessian(model: Any, theta: Any, data: Data, *, noise: Any) -> np.ndarray:
    """The Hessian ∇²θ ℓ(θ; y) (exact, forward over forward mode)."""
    lik = Likelihood.build(model, data, noise)
    _, _, H = lik.evaluate(lik.setup.theta(theta))
    return H


__all__ = ["Expansion", "Likelihood", "hessian", "loglike", "score"]
