"""Models given in closed form: ``fn(t, p)`` returns the outputs at time ``t``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ..errors import ModelError, describe
from .base import STATUS_NONFINITE, STATUS_OK, AbstractModel, check_names


class AnalyticModel(AbstractModel):
    """A model whose outputs are an explicit function of time and parameters.

    **Arguments:**
    - `fn`: ``fn(t, p)`` with `t` a scalar time and `p` a dict of parameters keyed by name; returns
      the outputs at `t` (a scalar when there is one output, else a sequence of length
      ``len(outputs)``). It must be written with `jax.numpy` so it can be differentiated.
    - `params`: parameter names.
    - `outputs`: output names (default ``["y"]``).
    - `name`: a label used in reports.

    Example: ``AnalyticModel(lambda t, p: p["D"] / p["V"] * jnp.exp(-p["CL"] / p["V"] * t),
    params=["CL", "V", "D"], outputs=["C"])``.
    """

    def __init__(
        self,
        fn: Callable[[Any, dict], Any],
        params: Sequence[str],
        outputs: Sequence[str] = ("y",),
        *,
        name: str | None = None,
    ):
        if not callable(fn):
            raise ModelError(
                f"The 'fn' argument of AnalyticModel must be callable. Got {describe(fn)}."
            )
        self.fn = fn
        self._params = check_names("params", params)
        self._outputs = check_names("outputs", outputs)
        if not self._outputs:
            raise ModelError(
                "The 'outputs' argument of AnalyticModel must name at least one output."
            )
        self._name = name or getattr(fn, "__name__", "AnalyticModel")
        self._freeze()

    @property
    def params(self) -> tuple[str, ...]:
        return self._params

    @property
    def outputs(self) -> tuple[str, ...]:
        return self._outputs

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"AnalyticModel({self._name}, params={list(self._params)}, outputs={list(self._outputs)})"

    def _simulate(self, p: dict, times: Any, schedule: Any) -> tuple[Any, Any]:
        n_out = len(self._outputs)

        def at(t):
            y = jnp.asarray(self.fn(t, p), dtype=jnp.float64)
            if y.size != n_out:
                raise ModelError(
                    f"The 'fn' of AnalyticModel {self._name!r} must return {n_out} value(s), one per "
                    f"output {list(self._outputs)}. Got shape {y.shape}."
                )
            return y.reshape(n_out)

        ys = jax.vmap(at)(times)
        status = jnp.where(jnp.all(jnp.isfinite(ys)), STATUS_OK, STATUS_NONFINITE)
        return ys, status


__all__ = ["AnalyticModel"]
