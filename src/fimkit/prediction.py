"""The one map everything is built on: (model, θ, design) → predictions μ(θ) and variances Σ(θ).

`predict` is the public face. Internally, `Setup` validates a (model, design, noise) triple once and
`Setup.compiled(kind)` returns a jitted program keyed on the static structure (parameter names, the
number of times per group, measured outputs, dose schedule), with θ, the sampling times and numeric
dose amounts as traced inputs: changing their values never recompiles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._jax import jit
from .design import Design, Group, as_design
from .errors import DesignError, ModelError, NoiseError, SolverError, describe
from .models.base import (
    STATUS_ADVICE,
    STATUS_MESSAGES,
    STATUS_OK,
    AbstractModel,
    resolve_theta,
)
from .noise import NoiseModel, as_noise

# Validated (model, design, noise) triples kept per model (see `Setup.build`).
SETUP_CACHE_SIZE = 64


def _check_model(model: Any) -> AbstractModel:
    if not isinstance(model, AbstractModel):
        raise ModelError(
            "The 'model' argument must be a fimkit model (AnalyticModel, ODEModel, ...). "
            f"Got {describe(model)}."
        )
    return model


def parameter_names(model: AbstractModel, noise: NoiseModel | None) -> tuple[str, ...]:
    """The model's parameters followed by the noise parameters the model does not have."""
    names = list(model.params)
    if noise is not None:
        names += [n for n in noise.param_names if n not in names]
    return tuple(names)


@dataclass(frozen=True, eq=False)
class Setup:
    """A validated (model, design, noise) triple and its static structure."""

    model: AbstractModel
    design: Design
    noise: NoiseModel | None
    names: tuple[str, ...]
    output_index: tuple[tuple[int, ...], ...]
    schedules: tuple[Any, ...]
    dose_values: tuple[np.ndarray, ...]

    @classmethod
    def build(cls, model: Any, design: Any, noise: Any = None, *, need_noise: bool = True) -> Setup:
        """The validated triple; kept on the model for a `Design` or `Group` seen before.

        Designs, groups, noise models and models are immutable, so the checks and the dose
        schedules of a triple need to run only once: repeated calls (a FIM per θ in a loop)
        then skip them.
        """
        model = _check_model(model)
        noise = as_noise(noise) if (need_noise or noise is not None) else None
        if not isinstance(design, Design | Group):
            return cls._build(model, as_design(design), noise)
        key = (id(design), noise)
        try:
            hash(key)
        except TypeError:  # a noise model holding something unhashable
            return cls._build(model, as_design(design), noise)
        setups = model._cache.setdefault("setups", {})
        hit = setups.get(key)
        if hit is not None and hit[0] is design:
            return hit[1]
        setup = cls._build(model, as_design(design), noise)
        if len(setups) >= SETUP_CACHE_SIZE:
            del setups[next(iter(setups))]
        setups[key] = (design, setup)  # the design is held, so its id is not reused meanwhile
        return setup

    @classmethod
    def _build(cls, model: AbstractModel, design: Design, noise: NoiseModel | None) -> Setup:
        if noise is not None:
            noise.validate(model.outputs)
        names = parameter_names(model, noise)
        output_index, schedules, dose_values = [], [], []
        for gi, g in enumerate(design.groups):
            outs = model.outputs if g.outputs is None else g.outputs
            unknown = [o for o in outs if o not in model.outputs]
            if unknown:
                raise DesignError(
                    f"The design's 'outputs' (group {gi}) names unknown outputs {unknown}; the "
                    f"model's outputs are {list(model.outputs)}."
                )
            output_index.append(tuple(model.outputs.index(o) for o in outs))
            if g.doses and not model.supports_doses:
                raise DesignError(
                    f"The design (group {gi}) has doses, but {model.name!r} is a "
                    f"{type(model).__name__}, which takes no doses; write the dose into the model "
                    f"or use an ODEModel. Got doses={list(g.doses)}."
                )
            t0 = getattr(model, "t0", 0.0)
            early = g.times[g.times < t0]
            if early.size:
                raise DesignError(
                    f"The design's 'times' (group {gi}) must be >= the model's t0={t0}. "
                    f"Got {early.tolist()}."
                )
            if model.supports_doses:
                from .models.ode import build_schedule

                sched, values = build_schedule(model, g, names)
            else:
                sched, values = None, np.zeros(0)
            schedules.append(sched)
            dose_values.append(values)
        return cls(
            model, design, noise, names, tuple(output_index), tuple(schedules), tuple(dose_values)
        )

    @property
    def groups(self):
        return self.design.groups

    def output_names(self, gi: int) -> tuple[str, ...]:
        return tuple(self.model.outputs[i] for i in self.output_index[gi])

    def theta(self, theta: Any, *, positive: bool = False) -> np.ndarray:
        return resolve_theta(self.names, theta, positive=positive)

    def times(self) -> tuple[np.ndarray, ...]:
        return tuple(g.times for g in self.groups)

    # -- the pure map ---------------------------------------------------------------------------
    @property
    def observation_outputs(self) -> tuple[str, ...]:
        """The output name of each entry of the flattened observation vector."""
        out: list[str] = []
        for gi, g in enumerate(self.groups):
            out.extend(self.output_names(gi) * g.times.size)
        return tuple(out)

    def outputs_flat(self, theta, times, dose_values):
        """Flattened predictions over groups (time-major, then output) and a status per group."""
        p = dict(zip(self.names, theta, strict=True))
        fs, statuses = [], []
        for gi in range(len(self.groups)):
            sched = self.schedules[gi]
            schedule = None if sched is None else (sched, dose_values[gi])
            ys, status = self.model._simulate(p, times[gi], schedule)
            fs.append(ys[:, jnp.asarray(self.output_index[gi])].reshape(-1))
            statuses.append(status)
        return jnp.concatenate(fs), jnp.stack(statuses)

    def outputs_and_jacobian(self, theta, times, dose_values):
        """(flattened predictions, their Jacobian with respect to θ, status per group).

        Models that integrate their own forward sensitivities (`ODEModel` with the explicit
        Tsit5 loop) give them directly; otherwise forward-mode AD through the model. Either way
        only the model's parameters are propagated through the solve: noise parameters (the last
        columns of θ) do not change the predictions, unless a dose amount or rate names one.
        """
        model = self.model
        n_model = len(model.params)
        # Names of θ beyond the model's parameters change the predictions only when a dose
        # amount or rate is one of them: then every column goes through the model.
        dosed = {
            src[1]
            for sched in self.schedules
            if sched is not None
            for k in range(len(sched.edges))
            for src in [s for _, s in sched.boluses[k]] + [s for _, s, _ in sched.rates[k]]
            if src[0] == "param"
        }
        if not dosed <= set(model.params):
            n_model = len(self.names)
        n_extra = len(self.names) - n_model
        if n_model == len(model.params) and getattr(model, "_sensitivity_loop", False):
            p = dict(zip(self.names, theta, strict=True))
            fs, Fs, statuses = [], [], []
            for gi in range(len(self.groups)):
                sched = self.schedules[gi]
                schedule = None if sched is None else (sched, dose_values[gi])
                ys, dys, status = model._simulate_sensitivities(p, times[gi], schedule)
                idx = jnp.asarray(self.output_index[gi])
                fs.append(ys[:, idx].reshape(-1))
                Fs.append(dys[:, idx].reshape(-1, n_model))
                statuses.append(status)
            f, F, status = jnp.concatenate(fs), jnp.concatenate(Fs), jnp.stack(statuses)
        else:

            def of_model_params(v):
                f, status = self.outputs_flat(
                    jnp.concatenate([v, theta[n_model:]]), times, dose_values
                )
                return f, (f, status)

            F, (f, status) = jax.jacfwd(of_model_params, has_aux=True)(theta[:n_model])
        if n_extra:
            F = jnp.concatenate([F, jnp.zeros((F.shape[0], n_extra), F.dtype)], axis=1)
        return f, F, status

    def location_dispersion(self, theta, times, dose_values):
        """The noise model's (location, dispersion) of every observation, and the statuses."""
        f, status = self.outputs_flat(theta, times, dose_values)
        p = dict(zip(self.names, theta, strict=True))
        loc, disp = self.noise.location_dispersion(f, p, self.observation_outputs)
        return loc, disp, status

    @property
    def key(self) -> tuple:
        """The static structure: what a compiled program depends on besides traced values."""
        return (
            self.names,
            self.noise,
            tuple(
                (
                    g.times.size,
                    g.n,
                    self.output_index[i],
                    self.schedules[i],
                    self.dose_values[i].size,
                )
                for i, g in enumerate(self.groups)
            ),
        )

    def compiled(self, kind: str, builder: Callable[[Setup], Callable]) -> Callable:
        """A jitted program for this structure, cached on the model instance (and remembered by
        this setup, which `build` keeps per design: a repeated call skips building the key)."""
        mine = self._programs
        if kind in mine:
            return mine[kind]
        key = (kind, *self.key)
        cache = self.model._cache
        if key not in cache:
            cache[key] = _cacheable(jit(builder(self)))
        mine[kind] = cache[key]
        return cache[key]

    @cached_property
    def _programs(self) -> dict[str, Callable]:
        return {}

    @cached_property
    def provenance(self) -> dict[str, Any]:
        """How results of this setup are computed (model, noise, design, solver, version)."""
        from . import __version__

        return {
            "model": self.model.name,
            "model_type": type(self.model).__name__,
            "noise": str(self.noise),
            "design": self.design.describe(),
            "fimkit": __version__,
            **self.model._solver_info(),
        }

    @cached_property
    def inputs(self) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """(sampling times, dose values) per group as device arrays: the traced inputs of the
        compiled programs, converted once (designs are immutable)."""
        return tuple(jnp.asarray(t) for t in self.times()), tuple(
            jnp.asarray(v) for v in self.dose_values
        )

    # -- host-side checks of what compiled code returns ---------------------------------------------
    def check_status(self, statuses: Any, theta: np.ndarray) -> None:
        statuses = np.asarray(statuses)
        for gi, s in enumerate(statuses.tolist()):
            if s != STATUS_OK:
                g = self.groups[gi]
                info = self.model._solver_info()
                raise SolverError(
                    f"Simulating {self.model.name!r} failed for design group {gi} (times "
                    f"{g.times.min():g} to {g.times.max():g}): {STATUS_MESSAGES[s]}, at theta="
                    f"{dict(zip(self.names, theta.tolist(), strict=True))}"
                    f"{' with ' + str(info) if info else ''}. {STATUS_ADVICE[s]}"
                )

    def check_noise(self, loc: Any, disp: Any) -> None:
        """Report observations where the noise model is degenerate (a zero variance, a zero mean)."""
        loc, disp = np.asarray(loc), np.asarray(disp)
        with np.errstate(divide="ignore", invalid="ignore"):
            w_loc, w_disp = (np.asarray(w) for w in self.noise._weights(loc, disp))
        bad = ~(np.isfinite(loc) & np.isfinite(w_loc) & np.isfinite(w_disp))
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            gi, t, out = self.locate(k)
            raise NoiseError(
                f"The noise model {self.noise} is degenerate for output {out!r} at time {t:g} "
                f"(design group {gi}): location {float(loc[k])!r}, dispersion {float(disp[k])!r} (a variance must "
                "be > 0; a Poisson or negative-binomial mean must be > 0; log-normal predictions "
                "must be > 0). A proportional error vanishes where the prediction is 0: do not "
                "sample there, or use Combined."
            )

    def locate(self, k: int) -> tuple[int, float, str]:
        """(group, time, output) of entry k of the flattened observation vector."""
        for gi, g in enumerate(self.groups):
            n_out = len(self.output_index[gi])
            size = g.times.size * n_out
            if k < size:
                return gi, float(g.times[k // n_out]), self.output_names(gi)[k % n_out]
            k -= size
        raise IndexError(k)

    def weights(self) -> np.ndarray:
        """Number of subjects behind each flattened observation."""
        return np.concatenate(
            [
                np.full(g.times.size * len(self.output_index[i]), g.n)
                for i, g in enumerate(self.groups)
            ]
        ).astype(np.float64)


def _cacheable(program: Callable) -> Callable:
    """Trace `program` with equinox's runtime checks turned into NaNs instead of host callbacks.

    diffrax guards its inputs with `equinox.error_if`, which lowers to a host callback, and JAX
    refuses to write programs with host callbacks to the persistent compilation cache: every new
    process would compile the ODE programs again. fimkit never relies on those checks (it reports
    solver failures from status values and non-finite outputs itself), so it traces with
    ``on_error="nan"``, the documented alternative, for its own programs only.
    """
    import sys

    def run(*args):
        eqx_errors = sys.modules.get("equinox._errors")
        if eqx_errors is None:  # equinox not loaded: nothing traced here can contain its checks
            return program(*args)
        previous = eqx_errors.EQX_ON_ERROR
        eqx_errors.EQX_ON_ERROR = "nan"
        try:
            return program(*args)
        finally:
            eqx_errors.EQX_ON_ERROR = previous

    return run


@dataclass(frozen=True)
class Prediction:
    """Model predictions for each design group: `values[g]` has shape (n_times, n_outputs)."""

    times: tuple[np.ndarray, ...]
    outputs: tuple[tuple[str, ...], ...]
    values: tuple[np.ndarray, ...]

    def __getitem__(self, output: str) -> np.ndarray:
        """The predictions of one output in a single-group design."""
        if len(self.values) != 1:
            raise DesignError(
                f"Prediction[{output!r}] needs a single-group design; this one has "
                f"{len(self.values)} groups: use .values[g]."
            )
        if output not in self.outputs[0]:
            raise DesignError(
                f"Unknown output {output!r}; the outputs are {list(self.outputs[0])}."
            )
        return self.values[0][:, self.outputs[0].index(output)]


def _predict_program(setup: Setup):
    def run(theta, times, dose_values):
        return setup.outputs_flat(theta, times, dose_values)

    return run


def predict(model: AbstractModel, theta: Any, design: Any) -> Prediction:
    """Predicted outputs of `model` at parameters `theta` for every group of `design`.

    **Arguments:**
    - `model`: an `AnalyticModel` or `ODEModel`.
    - `theta`: a dict keyed by parameter name, or a vector in `model.params` order.
    - `design`: a `Design`, a `Group`, or a list of sampling times.

    **Returns:** a `Prediction`; ``pred["C"]`` gives one output of a single-group design.
    """
    setup = Setup.build(model, design, None, need_noise=False)
    th = setup.theta(theta)
    mu, status = setup.compiled("predict", _predict_program)(th, setup.times(), setup.dose_values)
    setup.check_status(status, th)
    mu = np.asarray(mu)
    values, start = [], 0
    for gi, g in enumerate(setup.groups):
        n_out = len(setup.output_index[gi])
        values.append(mu[start : start + g.times.size * n_out].reshape(g.times.size, n_out))
        start += g.times.size * n_out
    return Prediction(
        setup.times(), tuple(setup.output_names(i) for i in range(len(setup.groups))), tuple(values)
    )


def sensitivities(model: AbstractModel, theta: Any, design: Any) -> np.ndarray:
    """∂μ/∂θ by forward-mode automatic differentiation: shape (n_observations, n_params).

    Rows run over groups, then times, then measured outputs (the order of the flattened
    predictions); columns follow `model.params`.
    """
    setup = Setup.build(model, design, None, need_noise=False)
    th = setup.theta(theta)
    S, _, status = setup.compiled("sensitivities", _sensitivity_program)(
        th, setup.times(), setup.dose_values
    )
    setup.check_status(status, th)
    return np.asarray(S)


def _sensitivity_program(setup: Setup):
    """∂f/∂θ together with f and the statuses, from one forward-mode pass."""

    def run(theta, times, dose_values):
        out, S, status = setup.outputs_and_jacobian(theta, times, dose_values)
        return S, out, status

    return run


__all__ = ["Prediction", "Setup", "parameter_names", "predict", "sensitivities"]
