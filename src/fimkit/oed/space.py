"""The design space: what an optimiser may choose, and within which limits.

A `DesignSpace` is one or more `GroupSpace`s (like a `Design` is one or more `Group`s). For each group:

- **sampling times**: `n_times` free times, continuous within `bounds` (one interval for all) or
  `windows` (one interval per time), at least `min_spacing` apart, plus `fixed_times` that are always
  sampled; or `n_times` times chosen from a discrete grid of `candidates`. `n_times` may be a list of
  allowed counts: the number of samples per subject is then chosen too;
- **doses**: `doses` as `Bolus`/`Infusion` objects with numeric amounts (the starting values); a
  dose with an entry in `dose_bounds` is continuous within it, one with an entry in `dose_levels` is
  chosen from a discrete set;
- **outputs**: measured `outputs` (fixed), or `output_options`, a list of alternatives to choose from;
- **group size** `n`: fixed; or, with a `budget` on the design space, the group sizes are chosen
  under Σ_g n_g·(cost_per_subject + n_times_g·cost_per_sample) ≤ budget.

Spaces are validated when built: reversed bounds, windows that cannot hold the requested count at the
minimum spacing, or too few candidates are errors that name the offending values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..design import Bolus, Infusion, as_doses
from ..errors import DesignError, describe


def _number(value: Any, argument: str, owner: str, *, minimum: float | None = 0.0) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise DesignError(
            f"The '{argument}' argument of {owner} must be a number. Got {describe(value)}."
        ) from exc
    if not np.isfinite(v) or (minimum is not None and v < minimum):
        raise DesignError(
            f"The '{argument}' argument of {owner} must be a finite number >= {minimum:g}. Got {v!r}."
        )
    return v


def _interval(value: Any, argument: str, owner: str) -> tuple[float, float]:
    try:
        lo, hi = value
    except (TypeError, ValueError) as exc:
        raise DesignError(
            f"The '{argument}' argument of {owner} must be a pair (lower, upper). Got {describe(value)}."
        ) from exc
    lo = _number(lo, argument, owner)
    hi = _number(hi, argument, owner)
    if lo > hi:
        raise DesignError(
            f"The '{argument}' argument of {owner} is reversed: the lower end {lo:g} is above the "
            f"upper end {hi:g}. Got {describe(value)}."
        )
    return lo, hi


def _counts(n_times: Any, owner: str) -> tuple[int, ...]:
    def one(k: Any) -> int:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
            raise DesignError(
                f"The 'n_times' argument of {owner} must be an integer >= 0 or a list of them. "
                f"Got {describe(n_times)}."
            )
        return int(k)

    if isinstance(n_times, int | np.integer) and not isinstance(n_times, bool):
        return (one(n_times),)
    try:
        ks = tuple(one(k) for k in n_times)
    except TypeError as exc:
        raise DesignError(
            f"The 'n_times' argument of {owner} must be an integer >= 0 or a list of them. "
            f"Got {describe(n_times)}."
        ) from exc
    if not ks or len(set(ks)) != len(ks):
        raise DesignError(
            f"The 'n_times' argument of {owner} must list distinct counts. Got {describe(n_times)}."
        )
    return tuple(sorted(ks))


def _greedy_fit(windows: Sequence[tuple[float, float]], spacing: float) -> int | None:
    """The first window index at which ordered times, `spacing` apart, cannot be placed (else None)."""
    t = -np.inf
    for i, (lo, hi) in enumerate(windows):
        t = max(lo, t + spacing)
        if t > hi * (1 + 1e-12) + 1e-12:
            return i
    return None


@dataclass(frozen=True, eq=False)
class GroupSpace:
    """The choices for one group of identical subjects (see the module docstring).

    **Arguments:**
    - `n_times`: the number of free sampling times (an int), or a list of allowed numbers. Defaults
      to the number of `windows` when they are given.
    - `bounds`: ``(lower, upper)`` for every free time.
    - `windows`: one ``(lower, upper)`` per free time, in time order.
    - `min_spacing`: the smallest gap between two free times (default 0).
    - `fixed_times`: times always sampled, not optimised.
    - `candidates`: a grid of allowed times (instead of `bounds`/`windows`); `replicates=True`
      allows the same candidate more than once.
    - `outputs`: the measured outputs (None: all); or `output_options`, a list of alternative lists.
    - `doses`: `Bolus`/`Infusion` objects. `dose_bounds` and `dose_levels` give, per dose (in the same
      order; None for a fixed dose), an interval or a list of levels for its numeric amount (the
      rate, for an infusion given by its rate).
    - `n`: the number of subjects (fixed unless the design space has a `budget`).
    """

    n_times: Any = None
    bounds: Any = None
    windows: Any = None
    min_spacing: float = 0.0
    fixed_times: Any = ()
    candidates: Any = None
    replicates: bool = False
    outputs: Any = None
    output_options: Any = None
    doses: Any = ()
    dose_bounds: Any = None
    dose_levels: Any = None
    n: int = 1

    def __post_init__(self) -> None:
        owner = "GroupSpace"
        spacing = _number(self.min_spacing, "min_spacing", owner)
        object.__setattr__(self, "min_spacing", spacing)
        # -- times ---------------------------------------------------------------------------------
        given = [k for k in ("bounds", "windows", "candidates") if getattr(self, k) is not None]
        if len(given) > 1:
            raise DesignError(
                f"{owner} takes one of 'bounds', 'windows' and 'candidates' for its free times. "
                f"Got {given}."
            )
        windows = None
        if self.windows is not None:
            try:
                raw = list(self.windows)
            except TypeError as exc:
                raise DesignError(
                    f"The 'windows' argument of {owner} must be a list of (lower, upper) pairs. "
                    f"Got {describe(self.windows)}."
                ) from exc
            if not raw:
                raise DesignError(f"The 'windows' argument of {owner} must not be empty.")
            windows = tuple(_interval(w, f"windows[{i}]", owner) for i, w in enumerate(raw))
            object.__setattr__(self, "windows", windows)
        n_times = self.n_times
        if n_times is None:
            if windows is None:
                raise DesignError(
                    f"{owner} needs 'n_times' (the number of free sampling times). Got None."
                )
            n_times = len(windows)
        counts = _counts(n_times, owner)
        object.__setattr__(self, "n_times", counts)
        try:
            fixed = np.asarray(self.fixed_times, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise DesignError(
                f"The 'fixed_times' argument of {owner} must be a list of times. "
                f"Got {describe(self.fixed_times)}."
            ) from exc
        if np.any(~np.isfinite(fixed) | (fixed < 0)):
            raise DesignError(
                f"The 'fixed_times' argument of {owner} must hold finite times >= 0. Got {fixed.tolist()}."
            )
        object.__setattr__(self, "fixed_times", tuple(fixed.tolist()))
        if min(counts) == 0 and not fixed.size:
            raise DesignError(
                f"A group with n_times=0 needs 'fixed_times' (a group must sample something). "
                f"Got n_times={list(counts)}, fixed_times=()."
            )
        if max(counts) > 0 and not given:
            raise DesignError(
                f"{owner} needs 'bounds', 'windows' or 'candidates' for its {max(counts)} free "
                "sampling time(s). Got none of them."
            )
        if self.bounds is not None:
            lo, hi = _interval(self.bounds, "bounds", owner)
            object.__setattr__(self, "bounds", (lo, hi))
            need = (max(counts) - 1) * spacing
            if need > (hi - lo) * (1 + 1e-12) + 1e-12:
                raise DesignError(
                    f"The 'bounds' ({lo:g}, {hi:g}) of {owner} cannot hold n_times={max(counts)} "
                    f"times at min_spacing={spacing:g}: that needs an interval of at least {need:g}, "
                    f"the bounds span {hi - lo:g}."
                )
        if windows is not None:
            if counts != (len(windows),):
                raise DesignError(
                    f"{owner} has {len(windows)} windows, one per free time, but n_times="
                    f"{list(counts)}. Give n_times={len(windows)} or leave it out."
                )
            if not self.ordered and spacing > 0:
                raise DesignError(
                    f"A min_spacing needs the 'windows' of {owner} in time order (lower and upper "
                    f"ends non-decreasing). Got {list(windows)}."
                )
            if self.ordered:
                bad = _greedy_fit(windows, spacing)
                if bad is not None:
                    raise DesignError(
                        f"The 'windows' of {owner} cannot hold one time each at min_spacing="
                        f"{spacing:g}: window {bad} {windows[bad]} cannot be reached from the "
                        f"earlier ones. Got windows={list(windows)}."
                    )
        if self.candidates is not None:
            try:
                cand = np.asarray(self.candidates, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError) as exc:
                raise DesignError(
                    f"The 'candidates' argument of {owner} must be a list of times. "
                    f"Got {describe(self.candidates)}."
                ) from exc
            if cand.size == 0 or np.any(~np.isfinite(cand) | (cand < 0)):
                raise DesignError(
                    f"The 'candidates' argument of {owner} must be a non-empty list of finite "
                    f"times >= 0. Got {cand.tolist()}."
                )
            cand = np.unique(cand)
            object.__setattr__(self, "candidates", tuple(cand.tolist()))
            if not self.replicates:
                # Greedy from the earliest candidate gives the most times at the spacing.
                fit, last = 0, -np.inf
                for c in cand:
                    if c >= last + spacing * (1 - 1e-12):
                        fit, last = fit + 1, c
                if fit < max(counts):
                    raise DesignError(
                        f"The 'candidates' of {owner} cannot hold n_times={max(counts)} distinct "
                        f"times at min_spacing={spacing:g}: at most {fit} of the {cand.size} "
                        "candidates fit (set replicates=True to allow repeated times)."
                    )
        elif self.replicates:
            raise DesignError(f"'replicates=True' of {owner} applies to 'candidates' only.")
        # -- outputs -------------------------------------------------------------------------------
        if self.outputs is not None and self.output_options is not None:
            raise DesignError(f"{owner} takes 'outputs' or 'output_options', not both.")
        if self.outputs is not None:
            object.__setattr__(self, "outputs", self._output_list(self.outputs, "outputs"))
        if self.output_options is not None:
            try:
                opts = tuple(self._output_list(o, "output_options") for o in self.output_options)
            except TypeError as exc:
                raise DesignError(
                    f"The 'output_options' argument of {owner} must be a list of output lists. "
                    f"Got {describe(self.output_options)}."
                ) from exc
            if not opts:
                raise DesignError(f"The 'output_options' argument of {owner} must not be empty.")
            object.__setattr__(self, "output_options", opts)
        # -- doses ---------------------------------------------------------------------------------
        doses = as_doses(self.doses, owner)
        object.__setattr__(self, "doses", doses)
        for arg in ("dose_bounds", "dose_levels"):
            spec = getattr(self, arg)
            if spec is None:
                object.__setattr__(self, arg, (None,) * len(doses))
                continue
            spec = tuple(spec)
            if len(spec) != len(doses):
                raise DesignError(
                    f"The '{arg}' argument of {owner} must have one entry per dose ({len(doses)}; "
                    f"None for a fixed dose). Got {len(spec)}."
                )
            clean = []
            for i, s in enumerate(spec):
                if s is None:
                    clean.append(None)
                    continue
                if self._dose_value(doses[i]) is None:
                    raise DesignError(
                        f"Dose {i} of {owner} takes its amount from the parameter "
                        f"{self._dose_source(doses[i])!r}, so '{arg}' cannot choose it. Give a "
                        f"number as the starting amount. Got {doses[i]!r}."
                    )
                if arg == "dose_bounds":
                    clean.append(_interval(s, f"dose_bounds[{i}]", owner))
                else:
                    try:
                        levels = tuple(
                            _number(v, f"dose_levels[{i}]", owner) for v in np.atleast_1d(s)
                        )
                    except TypeError as exc:
                        raise DesignError(
                            f"The 'dose_levels[{i}]' argument of {owner} must be a list of amounts. "
                            f"Got {describe(s)}."
                        ) from exc
                    if not levels:
                        raise DesignError(f"The 'dose_levels[{i}]' of {owner} must not be empty.")
                    clean.append(levels)
            object.__setattr__(self, arg, tuple(clean))
        both = [
            i
            for i, (b, lv) in enumerate(zip(self.dose_bounds, self.dose_levels, strict=True))
            if b is not None and lv is not None
        ]
        if both:
            raise DesignError(
                f"Dose(s) {both} of {owner} have both 'dose_bounds' and 'dose_levels'; give one."
            )
        # -- group size ----------------------------------------------------------------------------
        if isinstance(self.n, bool) or not isinstance(self.n, int | np.integer) or self.n < 1:
            raise DesignError(
                f"The 'n' argument of {owner} must be an integer >= 1. Got {describe(self.n)}."
            )
        object.__setattr__(self, "n", int(self.n))

    @staticmethod
    def _output_list(value: Any, argument: str) -> tuple[str, ...]:
        outs = (value,) if isinstance(value, str) else tuple(value)
        if not outs or not all(isinstance(o, str) for o in outs) or len(set(outs)) != len(outs):
            raise DesignError(
                f"The '{argument}' argument of GroupSpace must hold non-empty lists of distinct "
                f"output names. Got {describe(value)}."
            )
        return outs

    @staticmethod
    def _dose_source(d: Bolus | Infusion) -> float | str:
        if isinstance(d, Bolus):
            return d.amount
        return d.rate if d.rate is not None else d.amount

    @classmethod
    def _dose_value(cls, d: Bolus | Infusion) -> float | None:
        v = cls._dose_source(d)
        return None if isinstance(v, str) else float(v)

    # -- derived -----------------------------------------------------------------------------------
    @property
    def continuous(self) -> bool:
        """Whether the free times are continuous (bounds or windows) rather than a grid."""
        return self.candidates is None

    @property
    def ordered(self) -> bool:
        """Whether the free times can be kept in increasing order (windows in time order)."""
        if self.windows is None:
            return True
        lo = np.array([w[0] for w in self.windows])
        hi = np.array([w[1] for w in self.windows])
        return bool(np.all(np.diff(lo) >= 0) and np.all(np.diff(hi) >= 0))

    def time_bounds(self, k: int) -> list[tuple[float, float]]:
        """The bounds of each of `k` free times."""
        if self.windows is not None:
            return list(self.windows)
        if self.bounds is not None:
            return [self.bounds] * k
        c = self.candidates
        return [(min(c), max(c))] * k

    @property
    def output_choices(self) -> tuple[tuple[str, ...] | None, ...]:
        return self.output_options if self.output_options is not None else (self.outputs,)

    def dose_value_index(self, i: int) -> int:
        """The position of dose `i` in the vector of numeric dose values of its group."""
        return sum(self._dose_value(d) is not None for d in self.doses[:i])

    def level_choices(self) -> list[tuple[float | None, ...]]:
        """Every combination of discrete dose levels (None where a dose has no levels)."""
        import itertools

        per = [lv if lv is not None else (None,) for lv in self.dose_levels]
        return [tuple(c) for c in itertools.product(*per)]

    def describe(self) -> dict[str, Any]:
        return {
            "n_times": list(self.n_times),
            "bounds": self.bounds,
            "windows": None if self.windows is None else list(self.windows),
            "min_spacing": self.min_spacing,
            "fixed_times": list(self.fixed_times),
            "candidates": None if self.candidates is None else len(self.candidates),
            "outputs": self.outputs,
            "output_options": self.output_options,
            "doses": [repr(d) for d in self.doses],
            "dose_bounds": list(self.dose_bounds),
            "dose_levels": list(self.dose_levels),
            "n": self.n,
        }


_GROUP_FIELDS = (
    "n_times",
    "bounds",
    "windows",
    "min_spacing",
    "fixed_times",
    "candidates",
    "replicates",
    "outputs",
    "output_options",
    "doses",
    "dose_bounds",
    "dose_levels",
    "n",
)
_GROUP_DEFAULTS = {f: GroupSpace.__dataclass_fields__[f].default for f in _GROUP_FIELDS}


@dataclass(frozen=True, eq=False)
class DesignSpace:
    """What `optimize_design` may choose: ``DesignSpace(n_times=4, bounds=(0, 24))`` for one group,
    or ``DesignSpace(groups=[GroupSpace(...), ...], budget=...)``.

    The single-group arguments are those of `GroupSpace` (see there and the module docstring).

    **Arguments (several groups):**
    - `groups`: `GroupSpace` objects.
    - `budget`: when given, the number of subjects of each group is chosen too, under
      Σ_g n_g·(`cost_per_subject` + n_times_g·`cost_per_sample`) ≤ `budget`. The defaults
      (cost 1 per subject, 0 per sample) make the budget a total number of subjects; cost 0 per
      subject and 1 per sample make it a total number of samples, and with a list of allowed
      `n_times` the optimiser trades subjects against samples per subject.
    """

    n_times: Any = None
    bounds: Any = None
    windows: Any = None
    min_spacing: float = 0.0
    fixed_times: Any = ()
    candidates: Any = None
    replicates: bool = False
    outputs: Any = None
    output_options: Any = None
    doses: Any = ()
    dose_bounds: Any = None
    dose_levels: Any = None
    n: int = 1
    groups: Any = field(default=())
    budget: float | None = None
    cost_per_subject: float = 1.0
    cost_per_sample: float = 0.0

    def __post_init__(self) -> None:
        owner = "DesignSpace"
        if self.groups:
            set_args = [f for f in _GROUP_FIELDS if not _same(getattr(self, f), _GROUP_DEFAULTS[f])]
            if set_args:
                raise DesignError(
                    f"{owner} takes either 'groups' or the arguments of one group, not both. Got "
                    f"groups and {set_args}."
                )
            groups = tuple(self.groups)
            for g in groups:
                if not isinstance(g, GroupSpace):
                    raise DesignError(
                        f"The 'groups' argument of {owner} must hold GroupSpace objects. "
                        f"Got {describe(g)}."
                    )
        else:
            groups = (GroupSpace(**{f: getattr(self, f) for f in _GROUP_FIELDS}),)
            for f in _GROUP_FIELDS:
                object.__setattr__(self, f, getattr(groups[0], f))
        object.__setattr__(self, "groups", groups)
        kinds = {g.continuous for g in groups if max(g.n_times) > 0}
        if len(kinds) > 1:
            raise DesignError(
                f"{owner} mixes groups with continuous times and groups with candidate grids; "
                "use one kind for all groups."
            )
        cs = _number(self.cost_per_subject, "cost_per_subject", owner)
        cp = _number(self.cost_per_sample, "cost_per_sample", owner)
        object.__setattr__(self, "cost_per_subject", cs)
        object.__setattr__(self, "cost_per_sample", cp)
        if self.budget is not None:
            b = _number(self.budget, "budget", owner)
            if b <= 0:
                raise DesignError(f"The 'budget' argument of {owner} must be > 0. Got {b!r}.")
            object.__setattr__(self, "budget", b)
            if cs <= 0 and cp <= 0:
                raise DesignError(
                    f"A 'budget' needs a positive cost: cost_per_subject={cs:g}, "
                    f"cost_per_sample={cp:g}."
                )
            if self.discrete:
                raise DesignError(
                    f"A 'budget' (group sizes chosen by the optimiser) works with continuous "
                    f"sampling times; {owner} has candidate grids. Fix each group's 'n' instead, "
                    "or use optimal_weights for an approximate design on the grid."
                )
            for gi, g in enumerate(groups):
                cheapest = cs + (min(g.n_times) + len(g.fixed_times)) * cp
                if cheapest > b:
                    raise DesignError(
                        f"The 'budget' {b:g} cannot pay for one subject of group {gi} (cost "
                        f"{cheapest:g})."
                    )
        if self.discrete:
            for gi, g in enumerate(groups):
                if any(b is not None for b in g.dose_bounds):
                    raise DesignError(
                        f"Group {gi} of {owner} has continuous 'dose_bounds' with a candidate grid of "
                        "times; give 'dose_levels' (a discrete set) instead."
                    )

    @property
    def discrete(self) -> bool:
        """Whether the free times come from candidate grids (exchange algorithm)."""
        return any(not g.continuous for g in self.groups if max(g.n_times) > 0)

    def cost(self, gi: int, k: int) -> float:
        """The cost of one subject of group `gi` sampled at `k` free times (and its fixed times)."""
        g = self.groups[gi]
        return self.cost_per_subject + (k + len(g.fixed_times)) * self.cost_per_sample

    def describe(self) -> dict[str, Any]:
        return {
            "groups": [g.describe() for g in self.groups],
            "budget": self.budget,
            "cost_per_subject": self.cost_per_subject,
            "cost_per_sample": self.cost_per_sample,
        }


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return (len(a) == 0 and len(b) == 0) or a == b
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


__all__ = ["DesignSpace", "GroupSpace"]
