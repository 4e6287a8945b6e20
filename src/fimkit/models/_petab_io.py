"""PEtab version 1 math and tables without libpetab: a lightweight reader for `fimkit.models.petab`.

`import petab.v1` costs about a second (its package imports matplotlib, scipy.stats and all of
libpetab), most of the time `load_petab` needs. This module gives the same results for the two
things fimkit uses it for:

- `sympify_petab(expr)`: a PEtab math expression as a sympy expression, as
  ``petab.v1.math.sympify_petab`` returns it (numbers are sympy Floats, identifiers real Symbols,
  booleans numbers 0.0/1.0 outside of conditions). A small tokenizer and a precedence-climbing
  parser build a syntax tree; the tree is then converted with the same sympy constructors.
- `read_condition_table`, `read_measurement_table`, `read_observable_table`,
  `read_parameter_table`: the PEtab tables as pandas DataFrames, indexed as libpetab's
  ``get_*_df`` index them.

PEtab math (version 1), from the tightest to the loosest binding:

- ``x ^ y`` (right associative: ``2^3^2`` is ``2^9``);
- unary ``-x``, ``+x`` (their operand may contain ``^``: ``-2^2`` is ``-4``);
- ``!x`` (its operand may contain ``^``, not ``*``: ``!a*b`` is ``(!a)*b``);
- ``*``, ``/``; then ``+``, ``-`` (left associative);
- comparisons ``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=`` (left associative);
- ``&&`` and ``||``, one level, left associative: ``a || b && c`` is ``(a || b) && c``.

Numbers are ``digits[.digits][(e|E)[+|-]digits]`` or ``inf`` (``.5`` and ``5.`` are errors);
identifiers ``[A-Za-z_][A-Za-z0-9_]*``; ``true`` and ``false``. ``nan``, ``Inf``, ``TRUE``, ...
(any capitalisation of inf, nan, true, false other than the literals) are reserved names.
Functions: exp, ln, log(x) and log(x, base), log2, log10, sqrt, abs, sign, pow(x, y), min(x, y),
max(x, y), sin, cos, tan, sec, csc, cot, their hyperbolic versions (sinh, ...), the inverses of
all twelve (arcsin, ..., arccoth), and piecewise(value1, condition1, ..., otherwise).

pandas is imported inside the readers only: it is an optional dependency of fimkit.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import sympy as sp
from sympy.logic.boolalg import Boolean, BooleanFalse, BooleanTrue

__all__ = [
    "CONDITION_ID",
    "OBSERVABLE_ID",
    "PARAMETER_ID",
    "read_condition_table",
    "read_measurement_table",
    "read_observable_table",
    "read_parameter_table",
    "sympify_petab",
]

CONDITION_ID = "conditionId"
OBSERVABLE_ID = "observableId"
PARAMETER_ID = "parameterId"

# -- PEtab math: tokens ---------------------------------------------------------------------------

# Token kinds: "num" (a number or inf), "name", "true", "false", an operator or punctuation
# (its own text), and "end".
_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<num>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\|\||&&|>=|<=|==|!=|[<>+\-*/^!,()])
    """,
    re.VERBOSE | re.ASCII,
)

# Binary operators: (precedence, minimum precedence of the right operand). An operator continues
# an expression parsed at minimum precedence p when its precedence is >= p. A right operand
# parsed at the operator's own precedence makes it right associative (^), one above left.
_BINARY = {
    "^": (12, 12),
    "*": (9, 10),
    "/": (9, 10),
    "+": (8, 9),
    "-": (8, 9),
    "<": (6, 7),
    "<=": (6, 7),
    ">": (6, 7),
    ">=": (6, 7),
    "==": (6, 7),
    "!=": (6, 7),
    "&&": (5, 6),
    "||": (5, 6),
}
# Prefix operators: the minimum precedence of their operand.
_PREFIX = {"-": 11, "+": 11, "!": 10}

_RESERVED = frozenset({"inf", "nan", "true", "false"})


def _next_token(text: str, pos: int) -> tuple[str, str, int]:
    """The token at or after `pos` (after whitespace) as (kind, text, position); "end" at the end.
    Tokens are read one at a time, as the parser asks for them, so that the first error in
    reading order is reported."""
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _SyntaxError(pos, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup
        value = m.group()
        if kind == "ws":
            pos = m.end()
            continue
        if kind == "name" and value in ("inf", "true", "false"):
            kind = "num" if value == "inf" else value
        elif kind == "op":
            kind = value
        return kind, value, pos
    return "end", "", n


class _SyntaxError(Exception):
    def __init__(self, pos: int, msg: str):
        super().__init__(msg)
        self.pos = pos
        self.msg = msg


# -- PEtab math: syntax tree ------------------------------------------------------------------------
#
# Nodes are tuples: ("num", text), ("bool", True | False), ("var", name), ("call", name, [args]),
# ("prefix", op, operand), ("binary", op, left, right).


class _Parser:
    """Precedence climbing over the tokens of `text`; `parse` returns the syntax tree."""

    def __init__(self, text: str):
        self.text = text
        self.current = _next_token(text, 0)

    def peek(self) -> tuple[str, str, int]:
        return self.current

    def take(self) -> tuple[str, str, int]:
        tok = self.current
        if tok[0] != "end":
            self.current = _next_token(self.text, tok[2] + len(tok[1]))
        return tok

    def expect(self, kind: str) -> None:
        tok = self.peek()
        if tok[0] != kind:
            raise _SyntaxError(tok[2], f"expected {kind!r}, got {_describe(tok)}")
        self.take()

    def parse(self) -> tuple:
        tree = self.expr(0)
        tok = self.peek()
        if tok[0] != "end":
            raise _SyntaxError(tok[2], f"unexpected {_describe(tok)} after a complete expression")
        return tree

    def expr(self, min_prec: int) -> tuple:
        left = self.operand()
        while True:
            op = self.peek()[0]
            prec = _BINARY.get(op)
            if prec is None or prec[0] < min_prec:
                return left
            self.take()
            right = self.expr(prec[1])
            left = ("binary", op, left, right)

    def operand(self) -> tuple:
        kind, value, pos = self.take()
        if kind in _PREFIX:
            return ("prefix", kind, self.expr(_PREFIX[kind]))
        if kind == "num":
            return ("num", value)
        if kind in ("true", "false"):
            return ("bool", kind == "true")
        if kind == "(":
            inner = self.expr(0)
            self.expect(")")
            return inner
        if kind == "name":
            if self.peek()[0] != "(":
                return ("var", value)
            self.take()
            args = [self.expr(0)]
            while self.peek()[0] == ",":
                self.take()
                args.append(self.expr(0))
            self.expect(")")
            return ("call", value, args)
        raise _SyntaxError(pos, f"expected an operand, got {_describe((kind, value, pos))}")


def _describe(tok: tuple[str, str, int]) -> str:
    return "the end of the expression" if tok[0] == "end" else repr(tok[1])


# -- PEtab math: conversion to sympy ---------------------------------------------------------------


def _as_number(x: Any) -> Any:
    """sympy's true and false as the Floats 1.0 and 0.0 (operands of arithmetic)."""
    if isinstance(x, BooleanTrue):
        return sp.Float(1)
    if isinstance(x, BooleanFalse):
        return sp.Float(0)
    return x


def _as_condition(x: Any) -> Any:
    """A number as sympy's true or false where its zero-ness is known (operands of !, &&, ||
    and piecewise conditions); symbols and relations pass unchanged.

    As libpetab's (0.8) ``num2bool``: an expression of unknown sign that is neither a symbol nor a
    boolean becomes sympy's true, so ``piecewise(1, a + 1, 0)`` is 1.0 (libpetab compares the
    expression with ``!=`` in Python, which is structural); replicated to give the same results.
    """
    if isinstance(x, (BooleanTrue, BooleanFalse)):
        return x
    zero = x.is_zero
    if zero is True:
        return sp.false
    if zero is False:
        return sp.true
    if isinstance(x, Boolean):
        return x
    return sp.true


def _log_base(x: Any, base: int, evaluate: bool) -> Any:
    return -sp.oo if x.is_zero is True else sp.log(x, base, evaluate=evaluate)


_ONE_ARG = {
    "exp": sp.exp,
    "ln": sp.log,
    "sqrt": sp.sqrt,
    "abs": sp.Abs,
    "sign": sp.sign,
    "log2": lambda x, evaluate: _log_base(x, 2, evaluate),
    "log10": lambda x, evaluate: _log_base(x, 10, evaluate),
    "sin": sp.sin,
    "cos": sp.cos,
    "tan": sp.tan,
    "sec": sp.sec,
    "csc": sp.csc,
    "cot": sp.cot,
    "sinh": sp.sinh,
    "cosh": sp.cosh,
    "tanh": sp.tanh,
    "sech": sp.sech,
    "csch": sp.csch,
    "coth": sp.coth,
    "arcsin": sp.asin,
    "arccos": sp.acos,
    "arctan": sp.atan,
    "arcsec": sp.asec,
    "arccsc": sp.acsc,
    "arccot": sp.acot,
    "arcsinh": sp.asinh,
    "arccosh": sp.acosh,
    "arctanh": sp.atanh,
    "arcsech": sp.asech,
    "arccsch": sp.acsch,
    "arccoth": sp.acoth,
}
_TWO_ARGS = {"pow": sp.Pow, "min": sp.Min, "max": sp.Max}
_RELATIONS = {
    "<": sp.StrictLessThan,
    "<=": sp.LessThan,
    ">": sp.StrictGreaterThan,
    ">=": sp.GreaterThan,
    "==": sp.Equality,
    "!=": sp.Unequality,
}


class _Converter:
    def __init__(self, text: str, evaluate: bool):
        self.text = text
        self.evaluate = evaluate

    def error(self, msg: str) -> ValueError:
        return ValueError(f"Error parsing {self.text!r}: {msg}")

    def convert(self, node: tuple) -> Any:
        kind = node[0]
        if kind == "num":
            return sp.Float(node[1])
        if kind == "var":
            name = node[1]
            if name.lower() in _RESERVED:
                raise self.error(f"use of the reserved name {name!r}")
            return sp.Symbol(name, real=True)
        if kind == "bool":
            return sp.true if node[1] else sp.false
        if kind == "prefix":
            op = node[1]
            if op == "!":
                return ~_as_condition(self.convert(node[2]))
            operand = _as_number(self.convert(node[2]))
            return -operand if op == "-" else operand
        if kind == "binary":
            return self.binary(node[1], node[2], node[3])
        return self.call(node[1], node[2])

    def binary(self, op: str, left: tuple, right: tuple) -> Any:
        a = self.convert(left)
        b = self.convert(right)
        ev = self.evaluate
        if op in ("&&", "||"):
            a, b = _as_condition(a), _as_condition(b)
            return a & b if op == "&&" else a | b
        a, b = _as_number(a), _as_number(b)
        if op == "+":
            return sp.Add(a, b, evaluate=ev)
        if op == "-":
            return sp.Add(a, -b, evaluate=ev)
        if op == "*":
            return sp.Mul(a, b, evaluate=ev)
        if op == "/":
            if ev:
                return a / b
            return sp.Mul(a, sp.Pow(b, -1, evaluate=False), evaluate=False)
        if op == "^":
            return sp.Pow(a, b, evaluate=ev)
        return _RELATIONS[op](a, b, evaluate=ev)

    def call(self, name: str, arg_nodes: list[tuple]) -> Any:
        args = [self.convert(a) for a in arg_nodes]
        ev = self.evaluate
        n = len(args)

        def check(ok: bool) -> None:
            if not ok:
                raise self.error(f"wrong number of arguments ({n}) to {name}()")

        if name == "piecewise":
            check(n % 2 == 1)
            pieces = [(args[k], _as_condition(args[k + 1])) for k in range(0, n - 1, 2)]
            pieces.append((args[-1], sp.true))
            return sp.Piecewise(*pieces, evaluate=ev)
        args = [_as_number(a) for a in args]
        if name in _ONE_ARG:
            check(n == 1)
            return _ONE_ARG[name](args[0], evaluate=ev)
        if name in _TWO_ARGS:
            check(n == 2)
            return _TWO_ARGS[name](args[0], args[1], evaluate=ev)
        if name == "log":
            check(n in (1, 2))
            if args[0].is_zero is True:
                return -sp.oo
            return sp.log(*args, evaluate=ev)
        raise self.error(f"unknown function {name!r}")


def sympify_petab(expr: str | int | float | np.number, evaluate: bool = True) -> sp.Expr:
    """A PEtab (version 1) math expression as a sympy expression, as libpetab's
    ``petab.v1.math.sympify_petab`` returns it.

    Numbers in the text become sympy Floats (``"2"`` → ``2.0``, ``"inf"`` → ``oo``); identifiers
    Symbols with ``real=True``; true and false the Floats 1.0 and 0.0, except as conditions (of
    ``!``, ``&&``, ``||`` and piecewise). ``log(x, b)`` is the logarithm of x to the base b;
    ``log(0)``, ``log2(0)`` and ``log10(0)`` are ``-oo``. Python and numpy integers become sympy
    Integers, floats sympy Floats, without parsing. `evaluate` is passed to the sympy
    constructors, as libpetab's.

    Raises ValueError for a syntax error (with its position, 0-based), a reserved name (``nan``,
    ``Inf``, ...), an unknown function, a wrong number of arguments (libpetab: AssertionError),
    or a result that is not real (``sqrt(-1)``); TypeError for anything but a string or a number
    (sympy expressions too, which libpetab prints and parses again). Errors of sympy itself pass
    through as libpetab's do (``1/0``: ZeroDivisionError; ``a < b < c``: TypeError).
    """
    if isinstance(expr, (int, np.integer)):
        return sp.Integer(expr)
    if isinstance(expr, (float, np.floating)):
        return sp.Float(expr)
    if not isinstance(expr, str):
        raise TypeError(f"Error parsing {expr!r}: PEtab math must be a string or a number.")
    try:
        tree = _Parser(expr).parse()
    except _SyntaxError as exc:
        raise ValueError(
            f"Error parsing {expr!r}: syntax error at position {exc.pos}: {exc.msg}"
        ) from None
    result = _as_number(_Converter(expr, evaluate).convert(tree))
    try:
        not_real = result.is_extended_real is False
    except AttributeError:  # unevaluated sec(0) and the like
        not_real = False
    if not_real:
        raise ValueError(f"Error parsing {expr!r}: the expression {result} is not real-valued.")
    return result


# -- tables -----------------------------------------------------------------------------------------

_WHITESPACE_AROUND = re.compile(r"^\s|\s$")


def _read_tsv(path: str | os.PathLike) -> Any:
    import pandas as pd

    with warnings.catch_warnings():
        # pandas 3 deprecates float_precision (its default now reads floats exactly); older
        # pandas needs it for exact round trips, as libpetab reads.
        warnings.filterwarnings("ignore", message=".*float_precision.*")
        return pd.read_csv(path, sep="\t", float_precision="round_trip")


def _check_columns(df: Any, table: str) -> None:
    for i, col in enumerate(df.columns.values):
        if isinstance(col, str) and _WHITESPACE_AROUND.search(col):
            raise ValueError(
                f"The {table} table has whitespace around the name of column {i}: {col!r}."
            )


def _as_frame(source: Any) -> Any:
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        return source
    if isinstance(source, (str, os.PathLike)):
        return _read_tsv(source)
    raise TypeError(f"Expected a file name or a pandas DataFrame, got {type(source).__name__}.")


def _indexed(source: Any, table: str, id_column: str) -> Any:
    import pandas as pd

    df = _as_frame(source)
    _check_columns(df, table)
    if not isinstance(df.index, pd.RangeIndex):
        # An index other than the default: keep it as a column when it is the id column.
        df = df.reset_index(drop=df.index.name != id_column)
    if id_column not in df.columns:
        raise ValueError(f"The {table} table has no {id_column!r} column.")
    return df.set_index([id_column])


def read_condition_table(path: str | os.PathLike | Any) -> Any:
    """The PEtab condition table at `path` (or a DataFrame) indexed by ``conditionId``, as
    libpetab's ``get_condition_df``.

    Raises ValueError when a column name has whitespace around it (libpetab: AssertionError) or
    there is no conditionId column (libpetab: KeyError). A DataFrame is not modified (libpetab sets
    its index in place)."""
    return _indexed(path, "condition", CONDITION_ID)


def read_observable_table(path: str | os.PathLike | Any) -> Any:
    """The PEtab observable table at `path` (or a DataFrame) indexed by ``observableId``, as
    libpetab's ``get_observable_df``. Errors as `read_condition_table`."""
    return _indexed(path, "observable", OBSERVABLE_ID)


def read_measurement_table(path_or_df: str | os.PathLike | Any) -> Any:
    """The PEtab measurement table at `path_or_df`, with a default (range) index, as libpetab's
    ``get_measurement_df``; a DataFrame is returned as it is, after the column check.

    Raises ValueError when a column name has whitespace around it (libpetab: AssertionError)."""
    df = _as_frame(path_or_df)
    _check_columns(df, "measurement")
    return df


def read_parameter_table(path: str | os.PathLike | Any | Iterable[Any]) -> Any:
    """The PEtab parameter table at `path` (or a DataFrame) indexed by ``parameterId``, as
    libpetab's ``get_parameter_df``.

    Several files (or DataFrames) are read one by one and concatenated, as libpetab's. Raises
    ValueError for a duplicate parameterId (within a file or across files, as libpetab), a column
    name with whitespace around it (libpetab: AssertionError), or no parameterId column
    (libpetab: KeyError)."""
    import pandas as pd

    if isinstance(path, (str, os.PathLike, pd.DataFrame)):
        df = _indexed(path, "parameter", PARAMETER_ID)
    else:
        frames = [read_parameter_table(p) for p in path]
        if not frames:
            raise ValueError("No parameter table given (libpetab returns None).")
        df = pd.concat(frames)
    duplicates = sorted(set(df.index[df.index.duplicated()]), key=str)
    if duplicates:
        raise ValueError(f"The parameter table defines {PARAMETER_ID}s twice: {duplicates}.")
    return df
