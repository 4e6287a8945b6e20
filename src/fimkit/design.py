"""Experimental designs: sampling times, measured outputs, doses and group sizes.

A `Design` is one experiment made of one or more `Group`s. Each group is `n` identical, independent
subjects (or replicates) sampled at the same `times`, measuring the same `outputs`, given the same
`doses`. The Fisher information of a design is the sum over groups of `n` times the information of
one subject of that group; independent experiments add their Fisher informations.

Dosing belongs to the design, not the model: a `Bolus` adds an amount to a state at a time (a jump of
the state), an `Infusion` adds a constant rate to a state's derivative over a time window. Doses apply
to ODE models. An observation at the exact time of a bolus sees the state after the dose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import DesignError, describe


def _number_or_name(value: Any, argument: str, owner: str, *, positive: bool) -> float | str:
    """Dose amounts and rates are numbers, or the name of a parameter that supplies them."""
    if isinstance(value, str):
        if not value:
            raise DesignError(f"The '{argument}' of {owner} must not be an empty name.")
        return value
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise DesignError(
            f"The '{argument}' of {owner} must be a number or a parameter name. "
            f"Got {describe(value)}."
        ) from exc
    if not np.isfinite(v) or (positive and v < 0):
        raise DesignError(
            f"The '{argument}' of {owner} must be a finite, non-negative number. Got {v!r}."
        )
    return v


def _time(value: Any, argument: str, owner: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise DesignError(
            f"The '{argument}' of {owner} must be a number. Got {describe(value)}."
        ) from exc
    if not np.isfinite(v) or v < 0:
        raise DesignError(f"The '{argument}' of {owner} must be a finite time >= 0. Got {v!r}.")
    return v


@dataclass(frozen=True)
class Bolus:
    """An instantaneous dose: `amount` is added to `state` at `time`.

    `amount` is a number or the name of a model parameter (e.g. ``"D"``), so an unknown dose can be
    part of the analysis.
    """

    time: float
    amount: float | str
    state: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", _time(self.time, "time", "Bolus"))
        object.__setattr__(
            self, "amount", _number_or_name(self.amount, "amount", "Bolus", positive=True)
        )
        if not isinstance(self.state, str) or not self.state:
            raise DesignError(
                f"The 'state' of Bolus must be a state name. Got {describe(self.state)}."
            )


@dataclass(frozen=True)
class Infusion:
    """A constant-rate infusion into `state` from `start` for `duration`.

    Give either the total `amount` (rate = amount / duration) or the `rate`; each is a number or a
    parameter name.
    """

    start: float
    duration: float
    state: str
    amount: float | str | None = None
    rate: float | str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _time(self.start, "start", "Infusion"))
        d = _time(self.duration, "duration", "Infusion")
        if d <= 0:
            raise DesignError(f"The 'duration' of Infusion must be > 0. Got {d!r}.")
        object.__setattr__(self, "duration", d)
        if (self.amount is None) == (self.rate is None):
            raise DesignError(
                "Infusion needs exactly one of 'amount' and 'rate'. "
                f"Got amount={self.amount!r}, rate={self.rate!r}."
            )
        if self.amount is not None:
            object.__setattr__(
                self, "amount", _number_or_name(self.amount, "amount", "Infusion", positive=True)
            )
        else:
            object.__setattr__(
                self, "rate", _number_or_name(self.rate, "rate", "Infusion", positive=True)
            )
        if not isinstance(self.state, str) or not self.state:
            raise DesignError(
                f"The 'state' of Infusion must be a state name. Got {describe(self.state)}."
            )

    @property
    def end(self) -> float:
        return self.start + self.duration


Dose = Bolus | Infusion


def _times(times: Any, owner: str) -> np.ndarray:
    try:
        t = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DesignError(
            f"The 'times' argument of {owner} must be a list of numbers. Got {describe(times)}."
        ) from exc
    if t.ndim == 0:
        t = t.reshape(1)
    if t.ndim != 1 or t.size == 0:
        raise DesignError(
            f"The 'times' argument of {owner} must be a non-empty 1-D list of times. "
            f"Got shape {t.shape}: {describe(times)}."
        )
    bad = t[~np.isfinite(t) | (t < 0)]
    if bad.size:
        raise DesignError(
            f"The 'times' argument of {owner} must hold finite times >= 0. "
            f"Got {bad.tolist()} in {t.tolist()}."
        )
    t.setflags(write=False)
    return t


def as_doses(doses: Any, owner: str) -> tuple[Bolus | Infusion, ...]:
    """A tuple of doses from None, one dose or a sequence; anything else is a `DesignError`."""
    doses = doses if doses is not None else ()
    if isinstance(doses, Bolus | Infusion):
        doses = (doses,)
    doses = tuple(doses)
    for d in doses:
        if not isinstance(d, Bolus | Infusion):
            raise DesignError(
                f"The 'doses' argument of {owner} must hold Bolus or Infusion objects. "
                f"Got {describe(d)}."
            )
    return doses


@dataclass(frozen=True, eq=False)
class Group:
    """`n` identical subjects sampled at `times`, measuring `outputs` (None: all), given `doses`."""

    times: Any
    outputs: tuple[str, ...] | None = None
    doses: tuple[Dose, ...] = ()
    n: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "times", _times(self.times, "Group"))
        if self.outputs is not None:
            outs = (self.outputs,) if isinstance(self.outputs, str) else tuple(self.outputs)
            if not outs or not all(isinstance(o, str) for o in outs):
                raise DesignError(
                    "The 'outputs' argument of Group must be None (all outputs) or a non-empty list "
                    f"of output names. Got {describe(self.outputs)}."
                )
            if len(set(outs)) != len(outs):
                raise DesignError(f"The 'outputs' argument of Group has duplicates: {list(outs)}.")
            object.__setattr__(self, "outputs", outs)
        object.__setattr__(self, "doses", as_doses(self.doses, "Group"))
        if isinstance(self.n, bool) or not isinstance(self.n, int | np.integer) or self.n < 1:
            raise DesignError(
                f"The 'n' argument of Group must be an integer >= 1. Got {describe(self.n)}."
            )
        object.__setattr__(self, "n", int(self.n))

    def describe(self) -> dict[str, Any]:
        return {
            "times": self.times.tolist(),
            "outputs": None if self.outputs is None else list(self.outputs),
            "doses": [repr(d) for d in self.doses],
            "n": self.n,
        }


@dataclass(frozen=True, eq=False)
class Design:
    """One experiment: ``Design(times, outputs=None, doses=None, n=1)`` or ``Design(groups=[...])``.

    **Arguments:**
    - `times`: sampling times of one group (every listed output is measured at every time).
    - `outputs`: names of the measured outputs; None measures all of the model's outputs.
    - `doses`: `Bolus` and `Infusion` objects (ODE models).
    - `n`: number of identical subjects (replicates) in the group.
    - `groups`: several `Group`s instead of the arguments above.
    """

    times: Any = None
    outputs: Sequence[str] | None = None
    doses: Sequence[Dose] | None = None
    n: int = 1
    groups: tuple[Group, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.groups:
            if (
                self.times is not None
                or self.outputs is not None
                or self.doses is not None
                or self.n != 1
            ):
                raise DesignError(
                    "Design takes either 'groups' or 'times'/'outputs'/'doses'/'n', not both (give "
                    f"each Group its own n). Got groups={len(tuple(self.groups))}, "
                    f"times={describe(self.times)}, n={self.n!r}."
                )
            groups = tuple(self.groups)
            for g in groups:
                if not isinstance(g, Group):
                    raise DesignError(
                        f"The 'groups' argument of Design must hold Group objects. Got {describe(g)}."
                    )
        else:
            if self.times is None:
                raise DesignError("Design needs 'times' (or 'groups'). Got neither.")
            groups = (Group(self.times, self.outputs, self.doses or (), self.n),)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "times", groups[0].times if len(groups) == 1 else None)

    @property
    def n_observations(self) -> int:
        """Number of sampling times summed over groups and subjects (outputs not counted)."""
        return sum(g.n * g.times.size for g in self.groups)

    def describe(self) -> list[dict[str, Any]]:
        return [g.describe() for g in self.groups]


def as_design(design: Any) -> Design:
    """Accept a `Design`, a `Group`, or a plain list of times."""
    if isinstance(design, Design):
        return design
    if isinstance(design, Group):
        return Design(groups=(design,))
    if design is None:
        raise DesignError("The 'design' argument is required. Got None.")
    return Design(times=design)


__all__ = ["Bolus", "Design", "Group", "Infusion", "as_design"]
