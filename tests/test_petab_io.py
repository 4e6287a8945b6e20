"""fimkit.models._petab_io against libpetab: PEtab math (`sympify_petab`) and the table readers
give the same results as petab.v1's, on hand-written expressions, random expressions, and every
formula and table of the PEtab benchmark collection (when the shared data is there)."""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from fimkit.models._petab_io import (
    read_condition_table,
    read_measurement_table,
    read_observable_table,
    read_parameter_table,
    sympify_petab,
)

SHARED = Path(
    os.environ.get("FIMKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
BENCHMARK = SHARED / "petab-benchmark"


@pytest.fixture(scope="module")
def libpetab():
    pytest.importorskip("petab")
    import petab.v1
    import petab.v1.math

    return petab.v1


def _quiet():
    """libpetab's readers and sympy (Mul of a Not, in libpetab as here) warn about deprecations
    that are no concern of these comparisons."""
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore")
    return ctx


def _outcome(f, expr):
    ctx = _quiet()
    try:
        return "ok", f(expr)
    except Exception as exc:  # compared below
        return "error", exc
    finally:
        ctx.__exit__(None, None, None)


def assert_same(ours, theirs, text):
    """Structurally equal (sympy's ==), or equal after simplification; for expressions (not
    booleans such as ``a & b``), numerically equal at random positive values of the symbols."""
    if ours != theirs:
        assert sp.simplify(ours - theirs) == 0, (text, ours, theirs)
    assert type(ours) is type(theirs), (text, ours, theirs)
    if isinstance(ours, sp.Expr):
        symbols = sorted(ours.free_symbols | theirs.free_symbols, key=str)
        rng = np.random.default_rng(len(text))
        values = rng.uniform(0.1, 3.0, size=len(symbols))
        a = _evaluate(ours, symbols, values)
        b = _evaluate(theirs, symbols, values)
        if isinstance(a, Exception) or isinstance(b, Exception):
            # Not evaluable (a condition that is a bare symbol, a sum with a Not, ...): alike.
            assert type(a) is type(b), (text, a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-12)


def _evaluate(expr, symbols, values):
    with np.errstate(all="ignore"):
        try:
            return np.float64(sp.lambdify(symbols, expr, "numpy")(*values))
        except Exception as exc:  # compared by the caller
            return exc


def compare(libpetab, text):
    """Our result against libpetab's: the same expression, or an error of the same kind
    (libpetab's AssertionError for a wrong argument count is our ValueError)."""
    theirs = _outcome(libpetab.math.sympify_petab, text)
    ours = _outcome(sympify_petab, text)
    if theirs[0] == "error":
        assert ours[0] == "error", (text, ours[1], theirs[1])
        expected = ValueError if isinstance(theirs[1], AssertionError) else type(theirs[1])
        assert type(ours[1]) is expected, (text, ours[1], theirs[1])
        return False
    assert ours[0] == "ok", (text, ours[1], theirs[1])
    assert_same(ours[1], theirs[1], text)
    return True


# -- hand-written expressions -----------------------------------------------------------------------

VALID = [
    # numbers
    "2",
    "0",
    "01",
    "007.50",
    "1.5",
    "0.1",
    "1e-3",
    "1E+3",
    "1.5e3",
    "2.5E-2",
    "1e400",
    "1e-400",
    "inf",
    "-inf",
    "   3  ",
    "\t3\n",
    "3\r",
    # identifiers
    "x",
    "_a1",
    "infx",
    "k_1 * Species_2",
    # arithmetic and precedence
    "1 + 2",
    "a + b - c",
    "a - b - c",
    "a * b / c",
    "a / b / c",
    "a / b * c",
    "2 * 3 / 4 * 5",
    "a + b * c",
    "(a + b) * c",
    "a ^ b",
    "2 ^ 3 ^ 2",
    "a ^ b ^ c",
    "2 ^ -3 ^ 2",
    "a ^ -b * c",
    "-2 ^ 2",
    "-a ^ b",
    "-a ^ -b",
    "-a * b",
    "- 3",
    "-(3)",
    "--a",
    "+-+a",
    "a + -b",
    "x - -y",
    "a * -3",
    "x ^ 2",
    "x ^ -1",
    "x ^ 0.5",
    "exp(x) ^ 2",
    "((((a))))",
    "1 / (1 + exp(-k * (t - t0)))",
    # functions
    "exp(x)",
    "exp(-inf)",
    "ln(x)",
    "log(x)",
    "log(8, 2)",
    "log(2, 8)",
    "log(x, 10)",
    "log(0)",
    "log(0, 2)",
    "log(a, 0)",
    "log(0, a)",
    "log2(8)",
    "log2(x)",
    "log2(0)",
    "log10(100)",
    "log10(x)",
    "log10(0)",
    "sqrt(x)",
    "sqrt(4)",
    "abs(-2)",
    "abs(x - 1)",
    "sign(-3)",
    "sign(x)",
    "pow(2, 3)",
    "pow(x, y)",
    "min(a, b)",
    "max(a, 1)",
    "min(true, 2)",
    "sin(x) + cos(x) + tan(x)",
    "sec(x) + csc(x) + cot(x)",
    "sinh(x) + cosh(x) + tanh(x)",
    "sech(x) + csch(x) + coth(x)",
    "arcsin(0.5) + arccos(0.5) + arctan(x)",
    "arcsec(x) + arccsc(x) + arccot(x)",
    "arcsinh(x) + arccosh(x + 1) + arctanh(0.5)",
    "arcsech(0.5) + arccsch(x) + arccoth(x + 2)",
    "sec(0)",
    "sin(0)",
    # booleans, comparisons, piecewise
    "true",
    "false",
    "(true)",
    "true + 1",
    "true * 2",
    "-true",
    "+false",
    "abs(true)",
    "!true",
    "!0",
    "!!a",
    "!a",
    "!(a > 1)",
    "!(a + 1)",
    "!1 + 2",
    "1 < 2",
    "1 <= 1",
    "2 > 1",
    "1 >= 2",
    "1 == 1",
    "1 != 1",
    "true == 1",
    "true < false",
    "a == b",
    "a != b",
    "a < b",
    "a <= b",
    "a > b",
    "a >= b",
    "a < b == c",
    "a && b",
    "a || b",
    "a || b && c",
    "1 && 0",
    "2 > 1 && 3 > 4",
    "a > 1 || 0",
    "a < 1 && true",
    "!a == 0",
    "exp(x) * 2 > 1 == 1",
    "sign(true < 2)",
    "piecewise(1)",
    "piecewise(1, true, 0)",
    "piecewise(1, 1 > 2, 0)",
    "piecewise(1, 2, 0)",
    "piecewise(1, 0, 2, 1, 3)",
    "piecewise(a, b, c)",
    "piecewise(a, 0, b)",
    "piecewise(1, a + 1, 0)",
    "piecewise(a, b > 1 && c < 2, 3)",
    "piecewise(x, t < 10 || !(t >= 20), x ^ 2, t == 15, 0)",
    "piecewise(true, a > 1, false)",
    "piecewise(k1 * exp(-t), t > t0, k2)",
]

# Rejected by libpetab and here (ValueError, or sympy's own error for both).
INVALID = [
    "",
    " ",
    ".5",
    "5.",
    "1.e3",
    "1.2.3",
    "1e",
    "1e+",
    "2x",
    "0x10",
    "1.5e-3x",
    "a.b",
    "a$",
    "ä",
    "\f3",
    "a = b",
    "a | b",
    "a & b",
    "1 2",
    "1 + ",
    "(a",
    "a)",
    "(a)(b)",
    "sin()",
    "sin(x,)",
    "f(,x)",
    "true(1)",
    "inf(2)",
    "nan",
    "NaN",
    "Inf",
    "INF",
    "True",
    "FALSE",
    "nan + (",
    "x (2)",
    "Sin(x)",
    "nan(x)",
    "foo(1, 2)",
    "exp(1, 2)",
    "log(1, 2, 3)",
    "pow(2)",
    "min(1, 2, 3)",
    "piecewise(1, a > 0)",
    "ln(0)",
    "sqrt(-1)",
    "log(-1)",
    "1 / 0",
    "a < b < c",
    "!a < b",
]


@pytest.mark.parametrize("text", VALID)
def test_valid_expressions_match_libpetab(libpetab, text):
    assert compare(libpetab, text)


@pytest.mark.parametrize("text", INVALID)
def test_invalid_expressions_match_libpetab(libpetab, text):
    assert not compare(libpetab, text)


@pytest.mark.parametrize("evaluate", [True, False])
def test_unevaluated_and_numbers_match_libpetab(libpetab, evaluate):
    for text in [*VALID, 2, 0, True, 2.5, np.int64(3), np.float32(1.5), np.float64(1e-3)]:
        theirs = _outcome(lambda e: libpetab.math.sympify_petab(e, evaluate=evaluate), text)
        ours = _outcome(lambda e: sympify_petab(e, evaluate=evaluate), text)
        assert theirs[0] == ours[0] == "ok", (text, ours, theirs)
        assert sp.srepr(ours[1]) == sp.srepr(theirs[1]), (text, ours[1], theirs[1])


def test_literal_results():
    assert sympify_petab("2") == sp.Float(2.0) and isinstance(sympify_petab("2"), sp.Float)
    assert sympify_petab("inf") is sp.oo
    assert sympify_petab("-2^2") == sp.Float(-4.0)
    assert sympify_petab("log(8, 2)") == sp.Float(3.0)
    assert sympify_petab("true") == sp.Float(1.0)
    assert sympify_petab(2) == sp.Integer(2) and isinstance(sympify_petab(2), sp.Integer)
    assert sympify_petab("x") == sp.Symbol("x", real=True)


def _random_expression(rng: random.Random, depth: int) -> str:
    if depth == 0 or rng.random() < 0.25:
        return rng.choice(["a", "b", "c", "2", "0.5", "3e-1", "1", "0", "true", "false", "inf"])
    kind = rng.random()
    if kind < 0.5:
        op = rng.choice(["+", "-", "*", "/", "^", "<", ">=", "==", "!=", "&&", "||", "^", "*"])
        return f"{_random_expression(rng, depth - 1)} {op} {_random_expression(rng, depth - 1)}"
    if kind < 0.65:
        return rng.choice(["-", "+", "!"]) + _random_expression(rng, depth - 1)
    if kind < 0.75:
        return f"({_random_expression(rng, depth - 1)})"
    name, n = rng.choice(
        [("exp", 1), ("log", 2), ("log10", 1), ("abs", 1), ("max", 2), ("sin", 1), ("piecewise", 3)]
    )
    return f"{name}({', '.join(_random_expression(rng, depth - 1) for _ in range(n))})"


def test_random_expressions_match_libpetab(libpetab):
    rng = random.Random(20240607)
    parsed = 0
    for _ in range(400):
        parsed += compare(libpetab, _random_expression(rng, 4))
    assert parsed > 100


def test_syntax_errors_name_expression_and_position():
    with pytest.raises(ValueError, match=r"'a \+ \* b'.*position 4"):
        sympify_petab("a + * b")
    with pytest.raises(ValueError, match=r"position 1"):
        sympify_petab("1.e3")
    with pytest.raises(ValueError, match="reserved"):
        sympify_petab("nan")
    with pytest.raises(ValueError, match="unknown function"):
        sympify_petab("foo(x)")
    with pytest.raises(ValueError, match="number of arguments"):
        sympify_petab("exp(1, 2)")
    with pytest.raises(TypeError):
        sympify_petab(None)


# -- tables ---------------------------------------------------------------------------------------


def test_tables_whitespace_and_missing_id(tmp_path):
    pytest.importorskip("pandas")
    bad = tmp_path / "bad.tsv"
    bad.write_text("conditionId\t k1\nc0\t1\n")
    for reader, table in [
        (read_condition_table, "condition"),
        (read_measurement_table, "measurement"),
        (read_observable_table, "observable"),
        (read_parameter_table, "parameter"),
    ]:
        with pytest.raises(ValueError, match=rf"{table} table.*' k1'"):
            reader(bad)
    none = tmp_path / "none.tsv"
    none.write_text("k1\tk2\n1\t2\n")
    with pytest.raises(ValueError, match="conditionId"):
        read_condition_table(none)
    with pytest.raises(ValueError, match="observableId"):
        read_observable_table(none)
    with pytest.raises(ValueError, match="parameterId"):
        read_parameter_table(none)
    dup = tmp_path / "dup.tsv"
    dup.write_text("parameterId\tnominalValue\nk1\t1\nk1\t2\n")
    with pytest.raises(ValueError, match="k1"):
        read_parameter_table(dup)


def test_measurement_dataframe_returned_as_is():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"observableId": ["o"], "time": [1.0], "measurement": [2.0]})
    assert read_measurement_table(df) is df
    with pytest.raises(ValueError, match="measurement"):
        read_measurement_table(df.rename(columns={"time": "time "}))


def test_tables_from_dataframes_match_libpetab(libpetab):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"conditionId": ["c0", "c1"], "k1": [1.0, "k2"]})
    for ours_in, theirs_in in [(df, df.copy()), (df.set_index("conditionId"), None)]:
        theirs_in = ours_in.copy() if theirs_in is None else theirs_in
        ctx = _quiet()
        try:
            theirs = libpetab.get_condition_df(theirs_in)
        finally:
            ctx.__exit__(None, None, None)
        pd.testing.assert_frame_equal(read_condition_table(ours_in), theirs)


# -- the PEtab benchmark collection ---------------------------------------------------------------


def _problems() -> list[tuple[Path, dict]]:
    if not BENCHMARK.is_dir():
        return []
    import yaml

    out = []
    for path in sorted(BENCHMARK.glob("*/*.yaml")):
        with open(path) as fh:
            spec = yaml.safe_load(fh)
        if isinstance(spec, dict) and "problems" in spec:
            out.append((path, spec))
    return out


PROBLEMS = _problems()
needs_benchmark = pytest.mark.skipif(
    not PROBLEMS,
    reason=f"PEtab benchmark not found at {BENCHMARK} (set FIMKIT_SHARED_DATA to the data folder)",
)


def _files(path: Path, spec: dict, key: str) -> list[Path]:
    if key == "parameter_file":
        names = spec.get("parameter_file") or []
        names = [names] if isinstance(names, str) else names
    else:
        names = [n for prob in spec["problems"] for n in prob.get(key) or []]
    return [path.parent / n for n in names]


@needs_benchmark
def test_benchmark_tables_match_libpetab(libpetab):
    pd = pytest.importorskip("pandas")
    readers = [
        ("condition_files", read_condition_table, libpetab.get_condition_df),
        ("measurement_files", read_measurement_table, libpetab.get_measurement_df),
        ("observable_files", read_observable_table, libpetab.get_observable_df),
        ("parameter_file", read_parameter_table, libpetab.get_parameter_df),
    ]
    seen = set()
    for path, spec in PROBLEMS:
        for key, ours, theirs in readers:
            for f in _files(path, spec, key):
                if f in seen:
                    continue
                seen.add(f)
                ctx = _quiet()
                try:
                    expected = theirs(str(f))
                finally:
                    ctx.__exit__(None, None, None)
                pd.testing.assert_frame_equal(ours(f), expected, check_exact=True)
    assert len(seen) >= 4 * len({p.parent for p, _ in PROBLEMS})
    print(f"{len(seen)} tables compared")


@needs_benchmark
def test_benchmark_formulas_match_libpetab(libpetab):
    texts: set[str] = set()
    for path, spec in PROBLEMS:
        for f in _files(path, spec, "observable_files"):
            obs = read_observable_table(f)
            for col in ("observableFormula", "noiseFormula"):
                if col in obs.columns:
                    texts.update(v for v in obs[col] if isinstance(v, str))
        for f in _files(path, spec, "condition_files"):
            cond = read_condition_table(f)
            for col in cond.columns:
                texts.update(v for v in cond[col] if isinstance(v, str) and col != "conditionName")
    assert len(texts) > 100
    parsed = sum(compare(libpetab, text) for text in sorted(texts))
    print(f"{len(texts)} distinct formulas compared, {parsed} parsed")
    assert parsed > 0.95 * len(texts)
