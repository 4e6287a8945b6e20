"""SBML import: python-libsbml reads the file, sympy holds the equations, generated code runs in JAX.

`read_sbml` turns an SBML document into an `SBMLSystem`: the states, the constants with their values
in the file, assignment rules, reaction fluxes, the right-hand side of every state, initial values
and time-triggered events, all as sympy expressions. `load_sbml` compiles that system into an
`SBMLModel`, an `ODEModel` whose parameters are the SBML parameters the user chose. The PEtab
importer (`fimkit.models.petab`) compiles the same `SBMLSystem` into its own multi-condition
simulator.

Conventions (the SBML semantics, as AMICI and COPASI implement them):

- The state of a species is its SBML value: its concentration when ``hasOnlySubstanceUnits`` is
  false, its amount when true. Reactions give amounts per time, so
  ``d[S]/dt = Σ ν·v / V(compartment)`` for a concentration and ``dS/dt = Σ ν·v`` for an amount.
  Species in compartments whose size changes in time are not supported.
- Boundary and constant species are states that no reaction changes.
- Parameters, compartments and local parameters that no rule or event changes are constants; one
  with an initial assignment is derived from the others (evaluated wherever it is used).
- Parameters and compartments changed by a rate rule or an event are states.
- Expressions with ``piecewise`` become nested ``jax.numpy.where``; function definitions are
  expanded.

Supported beyond the core: initial assignments, assignment and rate rules, time-triggered events
(``time >= c`` with ``c`` free of the states). Unsupported constructs (algebraic rules, delays,
``rateOf``, fast reactions, events with delays, priorities or state-dependent triggers, SBML
packages, variable stoichiometry, species in compartments of varying size) raise `SBMLError` naming
the element id and the construct.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import sympy as sp

from .._jax import stack_scalars
from ..design import Bolus
from ..errors import ModelError, describe
from .ode import ODEModel

TIME = sp.Symbol("__fimkit_time", real=True)
# The time used inside the conditions of piecewise expressions that switch at a fixed time. The
# PEtab simulator integrates each interval between switching times separately and evaluates those
# conditions at the interval's midpoint, so a solver stage at the switching time itself never sees
# the wrong branch; elsewhere (load_sbml) it is the time itself.
TIME_SWITCH = sp.Symbol("__fimkit_tswitch", real=True)
AVOGADRO = 6.02214076e23


class SBMLError(ModelError):
    """An SBML document that cannot be imported: unsupported constructs, missing values, errors."""


def _libsbml():
    try:
        import libsbml
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("Reading SBML needs python-libsbml: pip install 'fimkit[sbml]'") from exc
    return libsbml


# -- MathML (libsbml AST) → sympy ----------------------------------------------------------------------

_UNARY = {
    "AST_FUNCTION_EXP": sp.exp,
    "AST_FUNCTION_LN": sp.log,
    "AST_FUNCTION_ABS": sp.Abs,
    "AST_FUNCTION_FLOOR": sp.floor,
    "AST_FUNCTION_CEILING": sp.ceiling,
    "AST_FUNCTION_SIN": sp.sin,
    "AST_FUNCTION_COS": sp.cos,
    "AST_FUNCTION_TAN": sp.tan,
    "AST_FUNCTION_SEC": sp.sec,
    "AST_FUNCTION_CSC": sp.csc,
    "AST_FUNCTION_COT": sp.cot,
    "AST_FUNCTION_SINH": sp.sinh,
    "AST_FUNCTION_COSH": sp.cosh,
    "AST_FUNCTION_TANH": sp.tanh,
    "AST_FUNCTION_SECH": sp.sech,
    "AST_FUNCTION_CSCH": sp.csch,
    "AST_FUNCTION_COTH": sp.coth,
    "AST_FUNCTION_ARCSIN": sp.asin,
    "AST_FUNCTION_ARCCOS": sp.acos,
    "AST_FUNCTION_ARCTAN": sp.atan,
    "AST_FUNCTION_ARCSEC": sp.asec,
    "AST_FUNCTION_ARCCSC": sp.acsc,
    "AST_FUNCTION_ARCCOT": sp.acot,
    "AST_FUNCTION_ARCSINH": sp.asinh,
    "AST_FUNCTION_ARCCOSH": sp.acosh,
    "AST_FUNCTION_ARCTANH": sp.atanh,
    "AST_FUNCTION_ARCSECH": sp.asech,
    "AST_FUNCTION_ARCCSCH": sp.acsch,
    "AST_FUNCTION_ARCCOTH": sp.acoth,
}
_RELATIONAL = {
    "AST_RELATIONAL_EQ": sp.Eq,
    "AST_RELATIONAL_NEQ": sp.Ne,
    "AST_RELATIONAL_LT": sp.Lt,
    "AST_RELATIONAL_LEQ": sp.Le,
    "AST_RELATIONAL_GT": sp.Gt,
    "AST_RELATIONAL_GEQ": sp.Ge,
}


def _is_boolean(expr: Any) -> bool:
    # sympy's Symbol is a Boolean too; only relations, logical functions and true/false count.
    return isinstance(
        expr,
        sp.core.relational.Relational
        | sp.logic.boolalg.BooleanFunction
        | sp.logic.boolalg.BooleanAtom,
    )


def _number(expr: Any) -> sp.Expr:
    """A boolean used as a number is 1 or 0 (SBML Level 3 Version 2 allows it)."""
    if _is_boolean(expr):
        if expr is sp.true:
            return sp.Integer(1)
        if expr is sp.false:
            return sp.Integer(0)
        return sp.Piecewise((sp.Integer(1), expr), (sp.Integer(0), True))
    return expr


def _boolean(expr: Any) -> Any:
    """A number used as a condition is true when non-zero."""
    if _is_boolean(expr):
        return expr
    return sp.Ne(expr, 0)


class _MathConverter:
    """Converts libsbml ASTs to sympy, expanding function definitions."""

    def __init__(self, libsbml: Any, symbols: Mapping[str, Any], functions: Mapping[str, Any]):
        self.libsbml = libsbml
        self.symbols = symbols
        self.functions = functions
        self._type_names = {getattr(libsbml, n): n for n in dir(libsbml) if n.startswith("AST_")}

    def convert(self, ast: Any, where: str, local: Mapping[str, Any] | None = None) -> Any:
        if ast is None:
            raise SBMLError(f"{where} has no math.")
        return self._convert(ast, where, local or {})

    def _convert(self, ast: Any, where: str, local: Mapping[str, Any]) -> Any:
        kind = self._type_names.get(ast.getType(), str(ast.getType()))
        children = [ast.getChild(i) for i in range(ast.getNumChildren())]

        def args() -> list[Any]:
            return [_number(self._convert(c, where, local)) for c in children]

        if kind == "AST_INTEGER":
            return sp.Integer(ast.getInteger())
        if kind in ("AST_REAL", "AST_REAL_E", "AST_RATIONAL"):
            value = ast.getReal()
            if kind == "AST_RATIONAL":
                return sp.Rational(ast.getNumerator(), ast.getDenominator())
            if math.isinf(value):
                return sp.oo if value > 0 else -sp.oo
            if math.isnan(value):
                return sp.nan
            return sp.Float(value)
        if kind == "AST_NAME":
            name = ast.getName()
            if name in local:
                return local[name]
            if name in self.symbols:
                return self.symbols[name]
            raise SBMLError(f"{where} refers to {name!r}, which is not defined in the model.")
        if kind == "AST_NAME_TIME":
            return TIME
        if kind == "AST_NAME_AVOGADRO":
            return sp.Float(AVOGADRO)
        if kind == "AST_CONSTANT_E":
            return sp.E
        if kind == "AST_CONSTANT_PI":
            return sp.pi
        if kind == "AST_CONSTANT_TRUE":
            return sp.true
        if kind == "AST_CONSTANT_FALSE":
            return sp.false
        if kind == "AST_PLUS":
            return sp.Add(*args()) if children else sp.Integer(0)
        if kind == "AST_TIMES":
            return sp.Mul(*args()) if children else sp.Integer(1)
        if kind == "AST_MINUS":
            a = args()
            return -a[0] if len(a) == 1 else a[0] - a[1]
        if kind == "AST_DIVIDE":
            a = args()
            return a[0] / a[1]
        if kind in ("AST_POWER", "AST_FUNCTION_POWER"):
            a = args()
            return a[0] ** a[1]
        if kind == "AST_FUNCTION_ROOT":
            a = args()
            return a[1] ** (1 / a[0]) if len(a) == 2 else sp.sqrt(a[0])
        if kind == "AST_FUNCTION_LOG":
            a = args()
            return sp.log(a[1]) / sp.log(a[0]) if len(a) == 2 else sp.log(a[0], 10)
        if kind in _UNARY:
            (a,) = args()
            return _UNARY[kind](a)
        if kind == "AST_FUNCTION_MIN":
            return sp.Min(*args())
        if kind == "AST_FUNCTION_MAX":
            return sp.Max(*args())
        if kind == "AST_FUNCTION_QUOTIENT":
            a = args()
            return sp.floor(a[0] / a[1])
        if kind == "AST_FUNCTION_REM":
            a = args()
            return a[0] - a[1] * sp.floor(a[0] / a[1])
        if kind in _RELATIONAL:
            a = args()
            if len(a) < 2:
                raise SBMLError(f"{where} has a relational operator with one argument.")
            rels = [_RELATIONAL[kind](a[i], a[i + 1]) for i in range(len(a) - 1)]
            return sp.And(*rels) if len(rels) > 1 else rels[0]
        if kind in (
            "AST_LOGICAL_AND",
            "AST_LOGICAL_OR",
            "AST_LOGICAL_XOR",
            "AST_LOGICAL_NOT",
            "AST_LOGICAL_IMPLIES",
        ):
            b = [_boolean(self._convert(c, where, local)) for c in children]
            if kind == "AST_LOGICAL_AND":
                return sp.And(*b)
            if kind == "AST_LOGICAL_OR":
                return sp.Or(*b)
            if kind == "AST_LOGICAL_XOR":
                return sp.Xor(*b)
            if kind == "AST_LOGICAL_IMPLIES":
                return sp.Implies(*b)
            return sp.Not(b[0])
        if kind == "AST_FUNCTION_PIECEWISE":
            pieces = []
            for i in range(0, len(children) - 1, 2):
                value = _number(self._convert(children[i], where, local))
                cond = _boolean(self._convert(children[i + 1], where, local))
                pieces.append((value, cond))
            if len(children) % 2 == 1:
                pieces.append((_number(self._convert(children[-1], where, local)), sp.true))
            else:
                # No "otherwise": SBML leaves the value undefined there.
                pieces.append((sp.nan, sp.true))
            return sp.Piecewise(*pieces)
        if kind == "AST_FUNCTION":
            name = ast.getName()
            if name not in self.functions:
                raise SBMLError(f"{where} calls {name!r}, which is not a function definition.")
            params, body = self.functions[name]
            a = args()
            if len(a) != len(params):
                raise SBMLError(
                    f"{where} calls function {name!r} with {len(a)} argument(s); it takes "
                    f"{len(params)}."
                )
            return body.xreplace(dict(zip(params, a, strict=True)))
        unsupported = {
            "AST_FUNCTION_DELAY": "delay()",
            "AST_FUNCTION_RATE_OF": "rateOf()",
            "AST_FUNCTION_FACTORIAL": "factorial()",
            "AST_LAMBDA": "a lambda outside a function definition",
            "AST_CSYMBOL_FUNCTION": "a csymbol function",
        }
        construct = unsupported.get(kind, f"the MathML construct {kind}")
        raise SBMLError(f"{where} uses {construct}, which fimkit does not support.")


# -- the symbolic system -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SBMLEvent:
    """A time-triggered event: at `time` (an expression of the constants) the `assignments`
    (state id → expression, evaluated with the values just before the event) are applied."""

    id: str
    time: sp.Expr
    assignments: tuple[tuple[str, sp.Expr], ...]
    fires_at_t0: bool


@dataclass(frozen=True, eq=False)
class SBMLSystem:
    """An SBML model as symbolic equations (sympy), before compilation.

    **Fields:**
    - `id`, `name`: the model's id and name.
    - `states`: state ids (species, then parameters and compartments changed by rate rules or events).
    - `constants`: constant ids and their values in the file (NaN when the file gives none); local
      parameters appear as ``"reactionId.localId"``.
    - `derived`: constants given by an initial assignment (id → expression).
    - `rules`: assignment rules (id → expression), in document order.
    - `reactions`: reaction fluxes (id → expression, amount per time).
    - `rhs`: the time derivative of each state (id → expression in states, constants, rules,
      reaction ids and time).
    - `initial`: the initial value of each state (id → expression; may refer to other states'
      initial values, rules and constants).
    - `events`: time-triggered events.
    - `species`: species id → (compartment id, True when the state is an amount).
    - `symbols`: id → sympy symbol, for every id above.
    """

    id: str
    name: str
    states: tuple[str, ...]
    constants: dict[str, float]
    derived: dict[str, sp.Expr]
    rules: dict[str, sp.Expr]
    reactions: dict[str, sp.Expr]
    rhs: dict[str, sp.Expr]
    initial: dict[str, sp.Expr]
    events: tuple[SBMLEvent, ...]
    species: dict[str, tuple[str, bool]]
    symbols: dict[str, sp.Symbol]
    source: str = ""
    kinds: dict[str, str] = field(default_factory=dict)

    def symbol(self, name: str) -> sp.Symbol:
        return self.symbols[name]

    @property
    def definitions(self) -> dict[sp.Symbol, sp.Expr]:
        """Every quantity defined by an expression: derived constants, rules, reaction fluxes."""
        out: dict[sp.Symbol, sp.Expr] = {}
        for table in (self.derived, self.rules, self.reactions):
            for k, v in table.items():
                out[self.symbols[k]] = v
        return out

    def parse(self, formula: str, *, where: str = "formula", extra: Sequence[str] = ()) -> sp.Expr:
        """An expression in SBML Level 3 infix syntax over this model's ids (and `extra` names)."""
        libsbml = _libsbml()
        settings = libsbml.L3ParserSettings()
        settings.setParseLog(libsbml.L3P_PARSE_LOG_AS_LN)
        ast = libsbml.parseL3FormulaWithSettings(formula, settings)
        if ast is None:
            raise SBMLError(
                f"Cannot parse the {where} {formula!r}: {libsbml.getLastParseL3Error()}"
            )
        symbols = dict(self.symbols)
        for n in extra:
            symbols.setdefault(n, sp.Symbol(n, real=True))
        if "time" not in symbols:
            symbols["time"] = TIME
        if "t" not in symbols:
            symbols["t"] = TIME
        return _number(_MathConverter(libsbml, symbols, {}).convert(ast, f"The {where}"))


def _read_document(source: str | os.PathLike) -> tuple[Any, str]:
    libsbml = _libsbml()
    text = str(source)
    if text.lstrip().startswith("<"):
        doc = libsbml.readSBMLFromString(text)
        where = "<SBML string>"
    else:
        path = Path(source)
        if not path.is_file():
            raise SBMLError(f"The SBML file {str(path)!r} does not exist.")
        doc = libsbml.readSBMLFromFile(str(path))
        where = str(path)
    errors = [
        doc.getError(i)
        for i in range(doc.getNumErrors())
        if doc.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR
    ]
    if errors:
        text = "; ".join(f"line {e.getLine()}: {e.getMessage().strip()}" for e in errors[:5])
        raise SBMLError(f"{where} is not valid SBML ({len(errors)} error(s)): {text}")
    if doc.getModel() is None:
        raise SBMLError(f"{where} holds no SBML model.")
    for i in range(doc.getNumPlugins()):
        plugin = doc.getPlugin(i)
        package = plugin.getPackageName()
        # Layout, render and groups only annotate; "l3v2extendedmath" is libsbml's name for the
        # core math of Level 3 Version 2. Any other package that the file marks as required
        # changes the model's meaning.
        if package in ("layout", "render", "groups", "l3v2extendedmath"):
            continue
        if package == "comp" and _comp_unused(doc):
            continue
        if package and doc.isPackageEnabled(package) and doc.getPackageRequired(package):
            raise SBMLError(
                f"{where} uses the SBML package {package!r} (model {doc.getModel().getId()!r}), "
                "which fimkit does not support."
            )
    return doc, where


def _comp_unused(doc: Any) -> bool:
    """A file that declares the comp package but has no submodels is a flat model."""
    plugin = doc.getPlugin("comp")
    model_plugin = doc.getModel().getPlugin("comp")
    return (
        plugin is not None
        and plugin.getNumModelDefinitions() == 0
        and plugin.getNumExternalModelDefinitions() == 0
        and (model_plugin is None or model_plugin.getNumSubmodels() == 0)
    )


def read_sbml(source: str | os.PathLike) -> SBMLSystem:
    """Read an SBML file (or an SBML string) into symbolic equations.

    **Arguments:**
    - `source`: a path to an SBML file, or the SBML document as a string.

    **Returns:** an `SBMLSystem`. Raises `SBMLError` naming the element id and the construct for
    anything fimkit does not support.
    """
    libsbml = _libsbml()
    doc, where = _read_document(source)
    m = doc.getModel()

    symbols: dict[str, sp.Symbol] = {}
    kinds: dict[str, str] = {}

    def declare(i: str, kind: str) -> sp.Symbol:
        if i in symbols:
            raise SBMLError(f"The id {i!r} is declared twice ({kinds[i]} and {kind}).")
        symbols[i] = sp.Symbol(i, real=True)
        kinds[i] = kind
        return symbols[i]

    compartments = [m.getCompartment(i) for i in range(m.getNumCompartments())]
    species = [m.getSpecies(i) for i in range(m.getNumSpecies())]
    parameters = [m.getParameter(i) for i in range(m.getNumParameters())]
    reactions = [m.getReaction(i) for i in range(m.getNumReactions())]
    rules = [m.getRule(i) for i in range(m.getNumRules())]
    events = [m.getEvent(i) for i in range(m.getNumEvents())]
    for c in compartments:
        declare(c.getId(), "compartment")
    for s in species:
        declare(s.getId(), "species")
    for p in parameters:
        declare(p.getId(), "parameter")
    for r in reactions:
        declare(r.getId(), "reaction")
        for ref in [*r.getListOfReactants(), *r.getListOfProducts()]:
            if ref.isSetId() and ref.getId():
                declare(ref.getId(), "speciesReference")

    # Function definitions, in document order (a body may call earlier ones).
    functions: dict[str, Any] = {}
    conv = _MathConverter(libsbml, symbols, functions)
    for i in range(m.getNumFunctionDefinitions()):
        fd = m.getFunctionDefinition(i)
        lam = fd.getMath()
        what = f"function definition {fd.getId()!r}"
        if lam is None or not lam.isLambda():
            raise SBMLError(f"The {what} is not a lambda expression.")
        n_args = lam.getNumBvars()
        params = [sp.Dummy(lam.getChild(j).getName()) for j in range(n_args)]
        local = {lam.getChild(j).getName(): params[j] for j in range(n_args)}
        body = conv.convert(lam.getChild(n_args), f"The {what}", local)
        functions[fd.getId()] = (params, _number(body))

    def math(ast: Any, what: str, local: Mapping[str, Any] | None = None) -> Any:
        return _number(conv.convert(ast, f"The {what}", local))

    # Rules and events decide what is a state.
    assignment: dict[str, sp.Expr] = {}
    rate: dict[str, sp.Expr] = {}
    for idx, r in enumerate(rules):
        if r.isAlgebraic():
            label = r.getMetaId() or r.getId() or f"#{idx}"
            raise SBMLError(
                f"Algebraic rule {label!r} of model {m.getId()!r}: algebraic rules (DAEs) are not "
                "supported."
            )
        var = r.getVariable()
        if var not in symbols:
            raise SBMLError(f"A rule assigns {var!r}, which is not defined in the model.")
        if kinds[var] in ("reaction", "speciesReference"):
            raise SBMLError(
                f"A rule assigns {kinds[var]} {var!r}: variable stoichiometry is not supported."
            )
        if r.isAssignment():
            assignment[var] = math(r.getMath(), f"assignment rule for {var!r}")
        else:
            rate[var] = math(r.getMath(), f"rate rule for {var!r}")

    event_targets: set[str] = set()
    for e in events:
        for a in e.getListOfEventAssignments():
            event_targets.add(a.getVariable())

    comp_of = {s.getId(): s.getCompartment() for s in species}
    for c in compartments:
        cid = c.getId()
        if cid in rate or cid in assignment or cid in event_targets:
            inside = [s for s, comp in comp_of.items() if comp == cid]
            if inside:
                raise SBMLError(
                    f"Compartment {cid!r} changes in time (a rule or an event sets its size) and "
                    f"holds species {inside[:5]}: species in compartments of varying size are not "
                    "supported."
                )

    initial_assignments: dict[str, sp.Expr] = {}
    for i in range(m.getNumInitialAssignments()):
        ia = m.getInitialAssignment(i)
        sym = ia.getSymbol()
        if sym not in symbols:
            raise SBMLError(f"An initial assignment sets {sym!r}, which is not defined.")
        if kinds[sym] == "speciesReference":
            raise SBMLError(
                f"The initial assignment of species reference {sym!r}: variable stoichiometry "
                "is not supported."
            )
        initial_assignments[sym] = math(ia.getMath(), f"initial assignment of {sym!r}")

    states: list[str] = []
    constants: dict[str, float] = {}
    derived: dict[str, sp.Expr] = {}
    initial: dict[str, sp.Expr] = {}
    species_info: dict[str, tuple[str, bool]] = {}

    def place(xid: str, value: float) -> None:
        """A compartment or parameter: a state (rate rule or event target), a value derived by an
        initial assignment, or a constant; assignment-rule targets are handled elsewhere."""
        if xid in assignment:
            return
        if xid in rate or xid in event_targets:
            states.append(xid)
            initial[xid] = initial_assignments.get(xid, sp.Float(value))
        elif xid in initial_assignments:
            derived[xid] = initial_assignments[xid]
        else:
            constants[xid] = float(value)

    for c in compartments:
        place(c.getId(), c.getSize() if c.isSetSize() else math_nan())

    for s in species:
        sid = s.getId()
        comp = s.getCompartment()
        amount = bool(s.getHasOnlySubstanceUnits())
        species_info[sid] = (comp, amount)
        if sid in assignment:
            continue
        states.append(sid)
        if sid in initial_assignments:
            initial[sid] = initial_assignments[sid]
        elif s.isSetInitialConcentration():
            value = sp.Float(s.getInitialConcentration())
            initial[sid] = value * symbols[comp] if amount else value
        elif s.isSetInitialAmount():
            value = sp.Float(s.getInitialAmount())
            initial[sid] = value if amount else value / symbols[comp]
        else:
            initial[sid] = sp.nan

    for p in parameters:
        place(p.getId(), p.getValue() if p.isSetValue() else math_nan())

    for e in event_targets:
        if e not in symbols:
            raise SBMLError(f"An event assigns {e!r}, which is not defined in the model.")
        if e in assignment:
            raise SBMLError(f"An event assigns {e!r}, which an assignment rule also defines.")
        if kinds[e] not in ("species", "parameter", "compartment"):
            raise SBMLError(f"An event assigns {kinds[e]} {e!r}, which is not supported.")

    # Reactions: fluxes with local parameters, and stoichiometry.
    fluxes: dict[str, sp.Expr] = {}
    changes: dict[str, list[sp.Expr]] = {s: [] for s in states}
    for r in reactions:
        rid = r.getId()
        if r.isSetFast() and r.getFast():
            raise SBMLError(f"Reaction {rid!r} is a fast reaction, which is not supported.")
        kl = r.getKineticLaw()
        if kl is None or kl.getMath() is None:
            raise SBMLError(f"Reaction {rid!r} has no kinetic law.")
        local: dict[str, Any] = {}
        for lp in [*kl.getListOfParameters(), *kl.getListOfLocalParameters()]:
            name = f"{rid}.{lp.getId()}"
            symbols[name] = sp.Symbol(name, real=True)
            kinds[name] = "localParameter"
            constants[name] = float(lp.getValue()) if lp.isSetValue() else math_nan()
            local[lp.getId()] = symbols[name]
        fluxes[rid] = math(kl.getMath(), f"kinetic law of reaction {rid!r}", local)
        for sign, refs in ((-1, r.getListOfReactants()), (1, r.getListOfProducts())):
            for ref in refs:
                sid = ref.getSpecies()
                if sid not in species_info:
                    raise SBMLError(f"Reaction {rid!r} refers to unknown species {sid!r}.")
                if ref.isSetStoichiometryMath():
                    stoich = math(
                        ref.getStoichiometryMath().getMath(),
                        f"stoichiometryMath of {sid!r} in reaction {rid!r}",
                    )
                elif ref.isSetStoichiometry():
                    stoich = sp.Float(ref.getStoichiometry())
                    if float(stoich).is_integer():
                        stoich = sp.Integer(int(ref.getStoichiometry()))
                else:
                    stoich = sp.Integer(1)
                if ref.isSetId() and ref.getId():
                    constants[ref.getId()] = float(stoich) if stoich.is_number else math_nan()
                s = m.getSpecies(sid)
                if s.getBoundaryCondition() or sid not in changes or sid in rate:
                    continue
                if s.getConstant():
                    raise SBMLError(
                        f"Reaction {rid!r} changes species {sid!r}, which is constant and not a "
                        "boundary species."
                    )
                comp, amount = species_info[sid]
                term = sign * stoich * symbols[rid]
                if not amount:
                    term = term / symbols[comp]
                factor = s.getConversionFactor() if s.isSetConversionFactor() else None
                if factor is None and m.isSetConversionFactor():
                    factor = m.getConversionFactor()
                if factor:
                    term = term * symbols[factor]
                changes[sid].append(term)

    rhs: dict[str, sp.Expr] = {}
    for sid in states:
        if sid in rate:
            rhs[sid] = rate[sid]
        else:
            rhs[sid] = sp.Add(*changes.get(sid, []))

    # Events: time triggers only.
    sbml_events: list[SBMLEvent] = []
    for idx, e in enumerate(events):
        eid = e.getId() or f"#{idx}"
        if e.isSetDelay():
            raise SBMLError(f"Event {eid!r} has a delay, which is not supported.")
        if e.isSetPriority():
            raise SBMLError(f"Event {eid!r} has a priority, which is not supported.")
        trig = e.getTrigger()
        if trig is None or trig.getMath() is None:
            raise SBMLError(f"Event {eid!r} has no trigger.")
        cond = _boolean(conv.convert(trig.getMath(), f"The trigger of event {eid!r}"))
        t_fire = _trigger_time(cond, eid, set(states), assignment, symbols)
        initial_value = trig.getInitialValue() if doc.getLevel() >= 3 else True
        assigns = []
        for a in e.getListOfEventAssignments():
            var = a.getVariable()
            assigns.append((var, math(a.getMath(), f"assignment to {var!r} of event {eid!r}")))
        sbml_events.append(
            SBMLEvent(eid, t_fire, tuple(assigns), fires_at_t0=not bool(initial_value))
        )

    return SBMLSystem(
        id=m.getId(),
        name=m.getName() or m.getId(),
        states=tuple(states),
        constants=constants,
        derived=derived,
        rules=assignment,
        reactions=fluxes,
        rhs=rhs,
        initial=initial,
        events=tuple(sbml_events),
        species=species_info,
        symbols=symbols,
        source=where,
        kinds=kinds,
    )


def math_nan() -> float:
    return float("nan")


def _depends_on_states(expr: Any, states: set[str], rules: Mapping[str, Any], seen=None) -> bool:
    """Whether `expr` depends on a state or on time, through assignment rules too."""
    seen = set() if seen is None else seen
    for s in expr.free_symbols:
        name = s.name
        if s in (TIME, TIME_SWITCH) or name in states:
            return True
        if name in rules and name not in seen:
            seen.add(name)
            if _depends_on_states(rules[name], states, rules, seen):
                return True
    return False


def _trigger_time(cond: Any, eid: str, states: set[str], rules: Mapping[str, Any], symbols) -> Any:
    """The time at which a trigger of the form ``time >= c`` (or ``time > c``) becomes true."""
    if isinstance(cond, sp.Gt | sp.Ge):
        g = cond.lhs - cond.rhs
    elif isinstance(cond, sp.Lt | sp.Le):
        g = cond.rhs - cond.lhs
    else:
        g = None
    if g is not None:
        g = sp.expand(g)
        a = g.coeff(TIME)
        rest = sp.expand(g - a * TIME)
        if (
            a.is_number
            and float(a) > 0
            and TIME not in rest.free_symbols
            and not _depends_on_states(rest, states, rules)
        ):
            return sp.simplify(-rest / a)
    raise SBMLError(
        f"Event {eid!r} has the trigger {cond}: only time triggers of the form time >= c (c not "
        "depending on the states) are supported."
    )


# -- switching times of piecewise expressions ------------------------------------------------------------


def switch_times(system: SBMLSystem, exprs: Sequence[Any]) -> tuple[list[sp.Expr], dict]:
    """Times at which conditions ``time <op> c`` inside `exprs` switch, and the substitution
    that makes those conditions read `TIME_SWITCH` instead of `TIME`.

    `c` must be free of the states and of time (through assignment rules too); other conditions
    are left alone and evaluated at the time itself.
    """
    states = set(system.states)
    found: list[sp.Expr] = []
    replace: dict[Any, Any] = {}
    for expr in exprs:
        for rel in expr.atoms(sp.core.relational.Relational):
            if TIME not in rel.free_symbols:
                continue
            g = sp.expand(rel.lhs - rel.rhs)
            a = g.coeff(TIME)
            rest = sp.expand(g - a * TIME)
            if not (a.is_number and a != 0) or TIME in rest.free_symbols:
                continue
            if _depends_on_states(rest, states, system.rules):
                continue
            c = sp.simplify(-rest / a)
            if not any(c == f for f in found):
                found.append(c)
            replace[rel] = rel.xreplace({TIME: TIME_SWITCH})
    return found, replace


# -- code generation -----------------------------------------------------------------------------------


def _printer_class():
    from sympy.printing.numpy import JaxPrinter

    class _Printer(JaxPrinter):
        def __init__(self, names: Mapping[sp.Symbol, str]):
            super().__init__({"fully_qualified_modules": True, "inline": True})
            self._names = names

        def _print_Symbol(self, expr):
            if expr in self._names:
                return self._names[expr]
            raise SBMLError(f"Internal error: no value for symbol {expr.name!r} in generated code.")

        _print_Dummy = _print_Symbol

        def _print_Float(self, expr):
            return repr(float(expr))

        def _print_NaN(self, expr):
            return "jax.numpy.nan"

        def _print_Infinity(self, expr):
            return "jax.numpy.inf"

        def _print_NegativeInfinity(self, expr):
            return "(-jax.numpy.inf)"

        def _print_BooleanTrue(self, expr):
            return "True"

        def _print_BooleanFalse(self, expr):
            return "False"

        def _print_Piecewise(self, expr):
            # Nested `where`s, not `jax.numpy.select`: the first true condition wins either way,
            # but select finds it with a reduction, which XLA does not fuse into the expressions
            # that use it (Fujita's right-hand side, with `stack_scalars`: 1 fused kernel).
            out = "jax.numpy.nan"
            for value, cond in reversed(expr.args):
                if cond == sp.true:
                    out = self._print(value)
                else:
                    out = f"jax.numpy.where({self._print(cond)}, {self._print(value)}, {out})"
            return out

    return _Printer


def _ordered(definitions: Mapping[sp.Symbol, Any], roots: Sequence[Any]) -> list[sp.Symbol]:
    """The definitions `roots` depend on, each after the definitions it needs (depth first)."""
    order: list[sp.Symbol] = []
    state: dict[sp.Symbol, int] = {}

    def visit(sym: sp.Symbol, path: list[str]) -> None:
        mark = state.get(sym)
        if mark == 2:
            return
        if mark == 1:
            cycle = " -> ".join([*path[path.index(sym.name) :], sym.name])
            raise SBMLError(
                f"The model's rules and assignments depend on each other in a cycle: {cycle}."
            )
        state[sym] = 1
        for dep in sorted(definitions[sym].free_symbols, key=lambda s: s.name):
            if dep in definitions:
                visit(dep, [*path, sym.name])
        state[sym] = 2
        order.append(sym)

    stack: list[sp.Symbol] = []
    for r in roots:
        for s in sorted(r.free_symbols, key=lambda s: s.name):
            if s in definitions:
                stack.append(s)
    # Rule chains of large models can be deep: the recursion limit is raised while visiting.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for s in stack:
            visit(s, [])
    finally:
        sys.setrecursionlimit(limit)
    return order


_COUNTER = [0]


def _with_reciprocals(
    definitions: dict[sp.Symbol, Any], outputs: list[Any]
) -> tuple[dict[sp.Symbol, Any], list[Any]]:
    """Divisions by a symbol (a compartment's volume, a parameter) as products with its
    reciprocal, which becomes a definition of its own (one division).

    Why: XLA counts a division as expensive and does not copy it into each of its users, so every
    ``flux / volume`` shared by two species' equations ended a fused kernel of its own (Zheng's
    right-hand side: 56 kernels). A product is copied freely: with the reciprocals, the same
    right-hand side is 16 kernels (1 with `stack_scalars`), its FIM program compiles 25 % faster,
    and the benchmark models' FIMs run 6-30 % faster (docs/performance.md). Values change by
    rounding only.
    """
    found: set[sp.Expr] = set()
    for e in [*outputs, *definitions.values()]:
        if isinstance(e, sp.Basic):
            found |= {a for a in e.atoms(sp.Pow) if a.exp == -1 and a.base.is_Symbol}
    if not found:
        return definitions, outputs
    recip = {a: sp.Dummy(f"recip_{a.base.name}", real=True) for a in found}

    def sub(e):
        return e.xreplace(recip) if isinstance(e, sp.Basic) else e

    out = {k: sub(v) for k, v in definitions.items()}
    for a, r in recip.items():
        out[r] = a
    return out, [sub(e) for e in outputs]


def _stack_rows(rows: int, values: Sequence[Any]) -> Any:
    """`values` as a (rows, len(values) // rows) matrix: a stack of row stacks (see
    `compile_function`)."""
    cols = len(values) // rows
    return jnp.stack([stack_scalars(values[i * cols : (i + 1) * cols]) for i in range(rows)])


def compile_function(
    inputs: Sequence[tuple[str, Sequence[Any]]],
    outputs: Sequence[Any],
    definitions: Mapping[sp.Symbol, Any] | None = None,
    *,
    name: str = "f",
    rows: int | None = None,
) -> Callable:
    """Generate a JAX function from sympy expressions.

    **Arguments:**
    - `inputs`: one (kind, symbols) pair per positional argument of the generated function:
      ``("vector", [s0, s1, ...])`` for a vector whose entries are the values of the symbols (None
      skips an entry), ``("scalar", [s])`` for a scalar.
    - `outputs`: the expressions to return, stacked into a vector.
    - `definitions`: intermediate quantities (symbol → expression) evaluated in dependency order
      when an output needs them.

    - `rows`: return a matrix of `rows` rows instead, filled row by row: a stack of rows, each a
      stack of its values, which XLA computes in one kernel even under forward-mode AD, where the
      tangent of one long stack is split into a kernel per block (a model's Jacobian: 0.44 against
      1.1 µs for Boehm's with its derivatives along six directions).

    **Returns:** ``f(*args)`` returning a float64 vector of ``len(outputs)`` entries (a matrix
    with `rows` rows).
    """
    definitions, outputs = _with_reciprocals(dict(definitions or {}), list(outputs))
    printer_cls = _printer_class()
    names: dict[sp.Symbol, str] = {}
    lines: list[str] = []
    needed: set[sp.Symbol] = set()
    order = _ordered(definitions, outputs)
    for expr in [*outputs, *(definitions[s] for s in order)]:
        needed |= expr.free_symbols
    arg_names = []
    for k, (arg, syms) in enumerate(inputs):
        var = f"a{k}"
        arg_names.append(var)
        if arg == "scalar":
            (sym,) = syms
            names[sym] = var
            continue
        for j, sym in enumerate(syms):
            if sym is not None and sym in needed and sym not in names:
                local = f"x{len(names)}"
                names[sym] = local
                lines.append(f"    {local} = {var}[{j}]")
    for j, sym in enumerate(order):
        names[sym] = f"d{j}"
    printer = printer_cls(names)
    for j, sym in enumerate(order):
        lines.append(f"    d{j} = {printer.doprint(definitions[sym])}")
    outs = ", ".join(f"_f({printer.doprint(e)})" for e in outputs)
    missing = sorted(s.name for s in needed if s not in names and s not in definitions)
    if missing:
        raise SBMLError(f"Internal error: generated code would need values for {missing}.")
    _COUNTER[0] += 1
    fname = f"_{name}_{_COUNTER[0]}"
    body = "\n".join(lines) if lines else "    pass"
    stack = "_stack(" if rows is None else f"_rows({rows}, "
    src = (
        f"def {fname}({', '.join(arg_names)}):\n{body}\n"
        f"    return {stack}[{outs}]) if {len(outputs)} else jax.numpy.zeros(0)\n"
    )
    namespace: dict[str, Any] = {
        "jax": jax,
        "functools": functools,
        "_f": lambda v: jnp.asarray(v, dtype=jnp.float64),
        "_stack": stack_scalars,
        "_rows": _stack_rows,
    }
    exec(compile(src, f"<fimkit generated {fname}>", "exec"), namespace)
    fn = namespace[fname]
    fn.__fimkit_source__ = src
    return fn


def jacobian_definitions(
    outputs: Sequence[Any], definitions: Mapping[sp.Symbol, Any], wrt: Sequence[sp.Symbol]
) -> tuple[dict[sp.Symbol, Any], list[list[Any]]]:
    """The partial derivatives of `outputs` with respect to the symbols `wrt`, by the chain rule
    through `definitions`.

    Each nonzero partial derivative of a definition becomes a definition of its own, shared by
    everything that uses it, as the definition itself is: the result stays as compact as the model
    and as sparse as its Jacobian (an entry with no dependence is the constant 0, which costs
    nothing in the generated code, where forward-mode AD along unit vectors multiplies by zeros).

    Returns ``(definitions, rows)``: the definitions extended with the partials, and
    ``rows[i][j] = ∂outputs[i]/∂wrt[j]`` in terms of them, for `compile_function`.
    """
    index = {w: j for j, w in enumerate(wrt)}
    partials: dict[sp.Symbol, dict[int, sp.Symbol]] = {}
    extended = dict(definitions)

    def gradient(expr: Any) -> dict[int, Any]:
        expr = sp.sympify(expr)
        grad: dict[int, Any] = {}
        for sym in expr.free_symbols:
            if sym in index:
                grad[index[sym]] = grad.get(index[sym], 0) + sp.diff(expr, sym)
            elif sym in partials:
                outer = sp.diff(expr, sym)
                if outer != 0:
                    for j, inner in partials[sym].items():
                        grad[j] = grad.get(j, 0) + outer * inner
        return {j: e for j, e in grad.items() if e != 0}

    for sym in _ordered(definitions, list(outputs)):
        for j, expr in gradient(definitions[sym]).items():
            partial = sp.Dummy(f"d_{sym.name}_{j}", real=True)
            extended[partial] = expr
            partials.setdefault(sym, {})[j] = partial
    rows = []
    for expr in outputs:
        grad = gradient(expr)
        rows.append([grad.get(j, sp.Integer(0)) for j in range(len(wrt))])
    return extended, rows


def initial_definitions(system: SBMLSystem) -> tuple[dict[sp.Symbol, Any], list[sp.Expr]]:
    """Definitions and expressions of the initial state at t = 0.

    Each state's initial value becomes a definition of the state's symbol, so initial assignments
    that refer to other species, rules and derived constants are evaluated in dependency order.
    """
    defs: dict[sp.Symbol, Any] = {}
    for table in (system.derived, system.rules):
        for k, v in table.items():
            defs[system.symbols[k]] = v.xreplace({TIME: 0, TIME_SWITCH: 0})
    for s in system.states:
        defs[system.symbols[s]] = system.initial[s].xreplace({TIME: 0, TIME_SWITCH: 0})
    return defs, [system.symbols[s] for s in system.states]


# -- load_sbml → an ODEModel ----------------------------------------------------------------------------


class SBMLModel(ODEModel):
    """An `ODEModel` read from SBML, with what the file says besides the equations.

    **Extra fields:**
    - `nominal`: the values the file gives the parameters (a dict; NaN where it gives none).
    - `doses`: the file's time-triggered events that add an amount to a state, as `Bolus` doses to
      put into the design (``Design(times, doses=model.doses)``).
    - `system`: the `SBMLSystem` it was compiled from.
    """

    def __init__(self, *args: Any, nominal: dict, doses: tuple, system: SBMLSystem, **kwargs: Any):
        self.nominal = dict(nominal)
        self.doses = tuple(doses)
        self.system = system
        super().__init__(*args, **kwargs)


def _as_outputs(system: SBMLSystem, outputs: Any) -> tuple[list[str], list[sp.Expr]]:
    if outputs is None:
        names = [s for s in system.states if system.kinds.get(s) == "species"]
        names = names or list(system.states)
        return names, [system.symbols[s] for s in names]
    if isinstance(outputs, str):
        outputs = [outputs]
    if isinstance(outputs, Mapping):
        names = list(outputs)
        exprs = [system.parse(str(f), where=f"output {n!r}") for n, f in outputs.items()]
        return names, exprs
    names, exprs = [], []
    for o in outputs:
        if not isinstance(o, str) or o not in system.symbols:
            raise SBMLError(
                f"The 'outputs' argument of load_sbml must name ids of the model (species, "
                f"parameters, rules) or be a dict {{name: formula}}. Got {describe(o)}."
            )
        names.append(o)
        exprs.append(system.symbols[o])
    return names, exprs


def load_sbml(
    source: str | os.PathLike,
    *,
    params: Sequence[str] | None = None,
    outputs: Sequence[str] | Mapping[str, str] | None = None,
    solver: Any = "kvaerno5",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 100_000,
    name: str | None = None,
) -> SBMLModel:
    """Load an SBML model as an `ODEModel` (an `SBMLModel`).

    **Arguments:**
    - `source`: path to the SBML file, or the SBML document as a string.
    - `params`: the ids that become the model's parameters (global parameters, compartments,
      ``"reactionId.localId"`` local parameters). Default: every constant global parameter without
      an initial assignment. The other constants keep the values in the file.
    - `outputs`: ids to observe (species, parameters, assignment-rule variables, reaction ids for
      fluxes), or a dict ``{name: formula}`` of SBML L3 infix formulas over the model's ids
      (``log`` is the natural logarithm, ``time`` the time). Default: every species.
    - `solver`, `rtol`, `atol`, `max_steps`: as for `ODEModel`; the default solver is the implicit
      ``"kvaerno5"``, since biochemical models are often stiff.
    - `name`: a label (default: the SBML model id).

    **Returns:** an `SBMLModel` (an `ODEModel`); `model.nominal` holds the file's parameter values
    and `model.doses` the dose-like events.
    """
    system = read_sbml(source)
    if params is None:
        params = [
            k for k, kind in system.kinds.items() if kind == "parameter" and k in system.constants
        ]
    params = list(params)
    unknown = [p for p in params if p not in system.constants]
    if unknown:
        raise SBMLError(
            f"The 'params' argument of load_sbml names {unknown}, which are not constants of the "
            f"model (global or local parameters, compartments without rules). Constants: "
            f"{list(system.constants)[:20]}{' ...' if len(system.constants) > 20 else ''}."
        )
    nan_consts = [k for k, v in system.constants.items() if k not in params and math.isnan(v)]
    fixed = {system.symbols[k]: sp.Float(v) for k, v in system.constants.items() if k not in params}
    out_names, out_exprs = _as_outputs(system, outputs)
    doses, events_left = _events_as_doses(system, params)
    if events_left:
        e = events_left[0]
        raise SBMLError(
            f"Event {e.id!r} of model {system.id!r} does not map onto a dose (only events at a "
            "constant time that add an amount to a species, S = S + amount, do): an ODEModel "
            "takes discontinuities only from the design's doses. Use load_petab for models with "
            "general time events."
        )

    def used(exprs: Sequence[Any]) -> set[str]:
        syms: set[Any] = set()
        defs = system.definitions
        for s in _ordered(defs, exprs):
            syms |= defs[s].free_symbols
        for e in exprs:
            syms |= e.free_symbols
        return {s.name for s in syms}

    defs = {k: v.xreplace(fixed) for k, v in system.definitions.items()}
    rhs_exprs = [system.rhs[s].xreplace(fixed).xreplace({TIME_SWITCH: TIME}) for s in system.states]
    out_exprs = [e.xreplace(fixed) for e in out_exprs]
    init_defs, init_exprs = initial_definitions(system)
    init_defs = {k: v.xreplace(fixed) for k, v in init_defs.items()}
    missing = sorted(
        set(nan_consts) & (used(rhs_exprs) | used(out_exprs) | _init_used(init_defs, init_exprs))
    )
    if missing:
        raise SBMLError(
            f"The SBML model {system.id!r} gives no value for {missing}; pass them in 'params' "
            "to supply values."
        )
    nan_init = [
        s for s in system.states if system.initial[s] is sp.nan or system.initial[s] == sp.nan
    ]
    if nan_init:
        raise SBMLError(
            f"The SBML model {system.id!r} gives no initial value for {nan_init[:10]} (no initial "
            "amount, concentration or assignment)."
        )
    tsym = [TIME]
    psyms = [system.symbols[p] for p in params]
    ysyms = [system.symbols[s] for s in system.states]
    f_rhs = compile_function(
        [("scalar", tsym), ("vector", ysyms), ("vector", psyms)], rhs_exprs, defs, name="rhs"
    )
    f_out = compile_function(
        [("scalar", tsym), ("vector", ysyms), ("vector", psyms)], out_exprs, defs, name="observe"
    )
    f_init = compile_function([("vector", psyms)], init_exprs, init_defs, name="y0")

    def vec(p: Mapping[str, Any]) -> Any:
        if not params:
            return jnp.zeros(0)
        return jnp.stack([jnp.asarray(p[n], dtype=jnp.float64) for n in params])

    def rhs(t, y, p):
        return f_rhs(t, y, vec(p))

    def observe(t, y, p):
        return f_out(t, y, vec(p))

    def y0(p):
        return f_init(vec(p))

    nominal = {p: float(system.constants[p]) for p in params}
    return SBMLModel(
        rhs,
        y0,
        observe,
        params=params,
        states=list(system.states),
        outputs=out_names,
        solver=solver,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        name=name or system.id or "sbml",
        nominal=nominal,
        doses=doses,
        system=system,
    )


def _init_used(defs: Mapping[Any, Any], exprs: Sequence[Any]) -> set[str]:
    syms: set[Any] = set()
    for s in _ordered(defs, exprs):
        syms |= defs[s].free_symbols
    return {s.name for s in syms}


def _events_as_doses(system: SBMLSystem, params: Sequence[str]) -> tuple[tuple, list]:
    """Events ``at time c: S = S + a`` (c a number, a a number or a parameter) as `Bolus` doses."""
    doses, left = [], []
    fixed = {system.symbols[k]: sp.Float(v) for k, v in system.constants.items() if k not in params}
    for e in system.events:
        t = e.time.xreplace(fixed)
        ok = t.is_number and float(t) > 0 and e.assignments
        pending = []
        for var, expr in e.assignments if ok else ():
            inc = sp.expand(expr.xreplace(fixed) - system.symbols[var])
            if var not in system.states or system.kinds.get(var) != "species":
                ok = False
            elif inc.is_number:
                pending.append(Bolus(float(t), float(inc), var))
            elif isinstance(inc, sp.Symbol) and inc.name in params:
                pending.append(Bolus(float(t), inc.name, var))
            else:
                ok = False
        if ok:
            doses.extend(pending)
        else:
            left.append(e)
    return tuple(doses), left


__all__ = [
    "SBMLError",
    "SBMLEvent",
    "SBMLModel",
    "SBMLSystem",
    "compile_function",
    "initial_definitions",
    "jacobian_definitions",
    "load_sbml",
    "read_sbml",
    "switch_times",
]
