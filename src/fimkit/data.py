"""Measured data matched to a design: `Data`.

Values are stored per design group as arrays of shape (n_subjects, n_times, n_outputs), in the
order of the group's times and measured outputs, with a mask for values the user chose to drop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .design import Design, Group, as_design
from .errors import DataError, describe


def _as_values(values: Any, n_times: int, n_outputs: int, where: str) -> np.ndarray:
    try:
        v = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"The 'values' of {where} must be numbers. Got {describe(values)}."
        ) from exc
    if v.ndim == 1 and n_outputs == 1:
        v = v[None, :, None]
    elif v.ndim == 2:
        v = v[None]
    if v.ndim != 3 or v.shape[1:] != (n_times, n_outputs):
        raise DataError(
            f"The 'values' of {where} must have shape (n_times={n_times}, n_outputs={n_outputs}) "
            f"or (n_subjects, {n_times}, {n_outputs}). Got shape {np.shape(values)}."
        )
    return v


@dataclass(frozen=True, eq=False)
class Data:
    """Observations matched to a design.

    ``Data(times, values, outputs=None, doses=None)`` for one group: `values` has shape (n_times,)
    for one output, (n_times, n_outputs), or (n_subjects, n_times, n_outputs). Several groups:
    ``Data.from_groups([(Group(...), values), ...])``; a long table: ``Data.from_dataframe(df)``.
    Missing values (NaN) are an error unless ``drop_missing=True``; infinite values always are.
    """

    design: Design
    values: tuple[np.ndarray, ...]
    mask: tuple[np.ndarray, ...]

    def __init__(
        self,
        times: Any = None,
        values: Any = None,
        outputs: Sequence[str] | None = None,
        doses: Any = None,
        *,
        drop_missing: bool = False,
        _groups: Sequence[tuple[Group, Any]] | None = None,
    ):
        if _groups is None:
            if times is None or values is None:
                raise DataError(
                    "Data needs 'times' and 'values'. Got times="
                    f"{describe(times)}, values={describe(values)}."
                )
            probe = np.asarray(values, dtype=object)
            n = probe.shape[0] if probe.ndim == 3 else 1
            _groups = [(Group(times, outputs, doses or (), n), values)]
        groups, vals, masks = [], [], []
        for gi, (g, v) in enumerate(_groups):
            n_out = len(g.outputs) if g.outputs is not None else None
            if n_out is None:
                arr = np.asarray(v, dtype=np.float64)
                n_out = 1 if arr.ndim == 1 else arr.shape[-1]
            arr = _as_values(v, g.times.size, n_out, f"Data group {gi}")
            if arr.shape[0] != g.n:
                g = Group(g.times, g.outputs, g.doses, arr.shape[0])
            inf = np.isinf(arr)
            if inf.any():
                where = np.argwhere(inf)[:5].tolist()
                raise DataError(
                    f"Data group {gi} has {int(inf.sum())} infinite value(s) at (subject, time "
                    f"index, output index) {where}."
                )
            nan = np.isnan(arr)
            if nan.any() and not drop_missing:
                where = [(s, float(g.times[t]), o) for s, t, o in np.argwhere(nan)[:5].tolist()]
                raise DataError(
                    f"Data group {gi} has {int(nan.sum())} missing value(s) (NaN), e.g. at "
                    f"(subject, time, output index) {where}. Pass drop_missing=True to leave them out."
                )
            arr.setflags(write=False)
            groups.append(g)
            vals.append(arr)
            masks.append(~nan)
        object.__setattr__(self, "design", Design(groups=tuple(groups)))
        object.__setattr__(self, "values", tuple(vals))
        object.__setattr__(self, "mask", tuple(masks))

    @classmethod
    def from_groups(
        cls, groups: Sequence[tuple[Group, Any]], *, drop_missing: bool = False
    ) -> Data:
        """Data of several groups: a list of (Group, values) pairs."""
        for g, _ in groups:
            if not isinstance(g, Group):
                raise DataError(f"Data.from_groups needs (Group, values) pairs. Got {describe(g)}.")
        return cls(_groups=list(groups), drop_missing=drop_missing)

    @classmethod
    def from_dataframe(
        cls,
        df: Any,
        *,
        time: str = "time",
        output: str = "output",
        value: str = "value",
        group: str | None = None,
        subject: str | None = None,
        drop_missing: bool = False,
        design: Any = None,
    ) -> Data:
        """Data from a long-format table (one row per observation): time, output, value[, group,
        subject]. Every subject of a group must be measured at the same times (NaN where missing).

        With `design`, the data are matched to it: group k of the table (in the order of its
        `group` labels, sorted) is group k of the design, which supplies the doses; every time and
        output of the table must be in that design group, and design times or outputs the table
        has no rows for are missing values (allowed with ``drop_missing=True``).
        """
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "Data.from_dataframe needs pandas: pip install 'fimkit[pandas]'"
            ) from exc
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"The 'df' argument must be a pandas DataFrame. Got {describe(df)}.")
        needed = [c for c in (time, output, value, group, subject) if c is not None]
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise DataError(
                f"The data frame has no column(s) {missing}; it has {list(df.columns)}."
            )
        if design is not None:
            design = as_design(design)
        grouped = list(df.groupby(group, sort=True)) if group else [(None, df)]
        if design is not None and len(grouped) != len(design.groups):
            raise DataError(
                f"The data frame has {len(grouped)} group(s) but the design has "
                f"{len(design.groups)}: each group of the table is matched to the design group at "
                f"the same position. Got group labels {[k for k, _ in grouped]}."
            )
        pairs = []
        for gi, (label, gdf) in enumerate(grouped):
            subj = gdf[subject] if subject else pd.Series(0, index=gdf.index)
            gdf = gdf.assign(_subject=subj.values, _time=gdf[time].astype(float).values)
            doses: Any = ()
            if design is not None:
                times, outputs, doses, snapped = _match_group(
                    design.groups[gi], gdf["_time"].to_numpy(), gdf[output], gi, label
                )
                gdf = gdf.assign(_time=snapped)
            table = gdf.pivot_table(
                index=["_subject", "_time"],
                columns=output,
                values=value,
                aggfunc="first",
                dropna=False,
            )
            table.columns = [str(c) for c in table.columns]
            if design is None:
                outputs = list(table.columns)
                times = np.sort(gdf["_time"].unique())
            else:
                table = table.reindex(columns=outputs)
            subjects = list(dict.fromkeys(subj.tolist()))
            full = pd.MultiIndex.from_product([subjects, times], names=["_subject", "_time"])
            arr = table.reindex(full).to_numpy(dtype=float).reshape(len(subjects), len(times), -1)
            pairs.append((Group(times, outputs, doses, len(subjects)), arr))
        return cls(_groups=pairs, drop_missing=drop_missing)

    @property
    def n_values(self) -> int:
        return int(sum(m.sum() for m in self.mask))


def _match_group(g: Group, times: np.ndarray, outputs: Any, gi: int, label: Any):
    """The design group's times, outputs and doses for one table group, and each row's time
    snapped to the design time it matches; data outside the design group is an error."""
    where = (
        f"group {label!r} of the data frame (design group {gi})"
        if label is not None
        else f"the data frame (design group {gi})"
    )
    known = g.times
    close = np.isclose(times[:, None], known[None, :], rtol=1e-12, atol=1e-12)
    hit = close.any(axis=1)
    if not hit.all():
        raise DataError(
            f"The data times {np.unique(times[~hit]).tolist()} of {where} are not in the design; "
            f"the design group samples at {known.tolist()}. Add them to the design or drop those "
            "rows."
        )
    names = [str(o) for o in dict.fromkeys(outputs.tolist())]
    design_outputs = list(g.outputs) if g.outputs is not None else names
    unknown = [o for o in names if o not in design_outputs]
    if unknown:
        raise DataError(
            f"The data of {where} measure output(s) {unknown} that the design group does not; its "
            f"outputs are {design_outputs}."
        )
    return known, design_outputs, g.doses, known[close.argmax(axis=1)]


__all__ = ["Data"]
