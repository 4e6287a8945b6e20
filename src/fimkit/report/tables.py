"""Tables that print as text and render as HTML in a notebook."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SingularFIMError


@dataclass(frozen=True)
class Table:
    """A titled table with optional notes. ``str()`` gives text; notebooks show HTML."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()

    def __str__(self) -> str:
        widths = [len(c) for c in self.columns]
        for r in self.rows:
            widths = [max(w, len(x)) for w, x in zip(widths, r, strict=True)]
        line = "  ".join("-" * w for w in widths)
        out = [self.title, line]
        out.append("  ".join(c.rjust(w) for c, w in zip(self.columns, widths, strict=True)))
        out.append(line)
        for r in self.rows:
            out.append("  ".join(x.rjust(w) for x, w in zip(r, widths, strict=True)))
        out.append(line)
        out.extend(self.notes)
        return "\n".join(out)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>" for r in self.rows
        )
        notes = "".join(f"<p>{html.escape(n)}</p>" for n in self.notes)
        return (
            f"<div><strong>{html.escape(self.title)}</strong><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>{notes}</div>"
        )


@dataclass(frozen=True)
class Summary:
    """Several tables shown together."""

    tables: tuple[Table, ...]

    def __str__(self) -> str:
        return "\n\n".join(str(t) for t in self.tables)

    def _repr_html_(self) -> str:
        return "".join(t._repr_html_() for t in self.tables)


def fmt(x: float, digits: int = 4) -> str:
    if x is None or not np.isfinite(x):
        return "inf" if x is not None and np.isinf(x) else "-"
    return f"{x:.{digits}g}"


def matrix_table(title: str, names: Sequence[str], m: np.ndarray) -> Table:
    rows = tuple((n, *(fmt(v) for v in row)) for n, row in zip(names, m, strict=True))
    return Table(title, ("", *names), rows)


def fim_summary(fim: Any, alpha: float = 0.05) -> Summary:
    from ..inference.intervals import wald_intervals
    from ..information.fim import format_direction

    scale_note = "log θ" if fim.scale == "log" else "θ"
    tables = [matrix_table(f"Fisher information about {scale_note}", fim.names, fim.matrix)]
    eig = fim.eigen()
    rank = fim.rank()
    notes = [
        f"rank {rank} of {fim.size}; condition number "
        f"{fmt(eig.values[-1] / eig.values[0]) if eig.values[0] > 0 else 'inf'}"
    ]
    try:
        ci = wald_intervals(fim, alpha=alpha)
        rse = fim.rse()
        level = f"{100 * (1 - alpha):g}%"
        rows = tuple(
            (
                n,
                fmt(ci.estimate[j]),
                fmt(ci.se[j]),
                fmt(rse[n], 3),
                fmt(ci.lower[j]),
                fmt(ci.upper[j]),
            )
            for j, n in enumerate(fim.names)
        )
        se_col = "SE(log)" if fim.scale == "log" else "SE"
        tables.append(
            Table(
                "Cramér–Rao bounds and Wald intervals",
                ("parameter", "value", se_col, "RSE %", f"{level} lower", f"{level} upper"),
                rows,
            )
        )
    except SingularFIMError:
        null = fim.null_space()
        for j in range(null.shape[1]):
            notes.append(
                "not identifiable along: "
                + format_direction(null[:, j], fim.names)
                + f" (on the {fim.scale} scale); standard errors are infinite"
            )
    spectrum = Table(
        "Eigenvalues (ascending)",
        ("eigenvalue", "direction (largest loadings)"),
        tuple(
            (fmt(w), format_direction(eig.vectors[:, j], fim.names, digits=2))
            for j, w in enumerate(eig.values)
        ),
        tuple(notes),
    )
    tables.append(spectrum)
    return Summary(tuple(tables))
