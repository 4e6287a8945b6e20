"""Models written as equations: sympy expressions (or strings) for the states' derivatives, the
outputs, the inputs and the initial conditions.

A `SymbolicModel` serves two kinds of analysis with one definition:

- symbolic: `fimkit.identifiability.structural_identifiability` reads the equations themselves
  (exact, a priori identifiability of parameters and unknown initial conditions);
- numeric: `SymbolicModel.to_ode()` turns the equations into a `fimkit.ODEModel` (sympy → JAX through
  `sympy.lambdify` with the ``jax`` module), for Fisher information, fitting and design.

Conventions. The time is the symbol ``t``. Inputs are known functions of time (``"1"``, ``"t"``,
``"exp(-t)"``, ``"Heaviside(t - 2)"``) or ``None`` for an input left unspecified (a *generic* input in
the structural analysis; `to_ode` then needs one). An initial condition is a number (known), an
expression in the parameters (known once the parameters are: ``"D"`` for a bolus of unknown size),
or ``None``/absent (unknown): an unknown initial condition of state ``x`` becomes the parameter
``"x(0)"`` of the ODE model and an unknown of the structural analysis.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
import sympy
from sympy.parsing.sympy_parser import (
    convert_xor,
    parse_expr,
    standard_transformations,
)

from ..errors import ModelError, describe
from .base import check_names
from .ode import ODEModel

TIME = "t"
SOLVER_OPTIONS = ("solver", "rtol", "atol", "max_steps")
_TRANSFORMS = (*standard_transformations, convert_xor)
# A name in a string, and whether a call follows it (then it is a function: exp, sin, ...).
_IDENTIFIER = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\s*(\()?")
_CONSTANTS = {"pi"}


def ic_name(state: str) -> str:
    """The parameter name given to the unknown initial condition of `state`: ``"x(0)"``."""
    return f"{state}(0)"


def _names_text(names: Sequence[str]) -> str:
    return "[" + ", ".join(repr(n) for n in names) + "]"


class SymbolicModel:
    """An ODE model written as equations.

    **Arguments:**
    - `rhs`: state name → its time derivative, as a string (``"-(k1 + k2)*x1 + k3*x2 + u"``) or a
      sympy expression. The order of the entries is the order of the states.
    - `outputs`: output name → expression in the states, parameters, inputs and ``t``. Every output
      must depend on at least one state.
    - `params`: the parameter names (every other symbol must be a state, an input or ``t``).
    - `inputs`: input name → a known function of ``t`` (string, number or sympy expression), or
      ``None`` for an unspecified (generic) input.
    - `ic`: state name → initial condition: a number (known), an expression in the parameters, or
      ``None`` (unknown). States left out have unknown initial conditions.
    - `t0`: the initial time (default 0).
    - `name`: a label for reports.

    Strings are parsed with sympy, every declared name as a plain symbol (so ``S``, ``E``, ``I``,
    ``N``, ``beta``, ``gamma`` are names, not sympy's constants or functions); ``^`` means a power.
    The model is immutable.
    """

    def __init__(
        self,
        rhs: Mapping[str, Any],
        outputs: Mapping[str, Any],
        params: Sequence[str],
        *,
        inputs: Mapping[str, Any] | None = None,
        ic: Mapping[str, Any] | None = None,
        t0: float = 0.0,
        name: str | None = None,
    ):
        for arg, value in (("rhs", rhs), ("outputs", outputs)):
            if not isinstance(value, Mapping) or not value:
                raise ModelError(
                    f"The '{arg}' argument of SymbolicModel must be a non-empty dict of name → "
                    f"expression. Got {describe(value)}."
                )
        if inputs is not None and not isinstance(inputs, Mapping):
            raise ModelError(
                "The 'inputs' argument of SymbolicModel must be a dict of input name → function of "
                f"t (or None for a generic input). Got {describe(inputs)}."
            )
        if ic is not None and not isinstance(ic, Mapping):
            raise ModelError(
                "The 'ic' argument of SymbolicModel must be a dict of state name → initial "
                f"condition. Got {describe(ic)}."
            )
        states = check_names("states (the keys of rhs)", list(rhs))
        params_t = check_names("params", params)
        input_names = check_names("inputs", list(inputs or {}))
        output_names = check_names("outputs", list(outputs))
        self._check_clashes(states, params_t, input_names)
        try:
            t0 = float(t0)
        except (TypeError, ValueError) as exc:
            raise ModelError(
                f"The 't0' argument of SymbolicModel must be a number. Got {describe(t0)}."
            ) from exc
        if not math.isfinite(t0):
            raise ModelError(f"The 't0' argument of SymbolicModel must be finite. Got {t0!r}.")

        symbols = {n: sympy.Symbol(n) for n in (*states, *params_t, *input_names, TIME)}
        self._symbols = symbols
        self._states = states
        self._params = params_t
        self._inputs = input_names
        self._outputs = output_names
        self._t0 = t0
        self._name = name or "SymbolicModel"

        allowed = set(states) | set(params_t) | set(input_names) | {TIME}
        self._rhs = {
            s: self._parse(rhs[s], f"the right-hand side of {s!r}", allowed) for s in states
        }
        out_exprs = {}
        for o in output_names:
            e = self._parse(outputs[o], f"the output {o!r}", allowed)
            if not (e.free_symbols & {symbols[s] for s in states}):
                raise ModelError(
                    f"The output {o!r} = {outputs[o]!r} depends on no state (its symbols are "
                    f"{sorted(str(x) for x in e.free_symbols)}); an output must depend on at "
                    f"least one of the states {_names_text(states)}. To observe a parameter "
                    "directly, make it a constant state (derivative 0) whose initial condition is "
                    "that parameter."
                )
            out_exprs[o] = e
        self._output_exprs = out_exprs
        self._input_exprs = {}
        for u in input_names:
            value = inputs[u]
            if value is None:
                self._input_exprs[u] = None
                continue
            self._input_exprs[u] = self._parse(
                value, f"the input {u!r} (a known function of t)", {TIME}
            )
        self._ic = self._parse_ic(ic or {})
        self._frozen = True

    # -- construction helpers -------------------------------------------------------------------
    @staticmethod
    def _check_clashes(states, params, inputs) -> None:
        groups = {"states": states, "params": params, "inputs": inputs}
        seen: dict[str, str] = {}
        for kind, names in groups.items():
            for n in names:
                if n == TIME:
                    raise ModelError(
                        f"The name {TIME!r} is the time; it cannot be one of the {kind}. "
                        f"Got {kind}={list(names)}."
                    )
                if n in seen:
                    raise ModelError(
                        f"The name {n!r} is used for both {seen[n]} and {kind}; names must be "
                        "unique across states, parameters and inputs."
                    )
                seen[n] = kind
        for s in states:
            if ic_name(s) in seen:
                raise ModelError(
                    f"The name {ic_name(s)!r} is reserved for the unknown initial condition of "
                    f"state {s!r}; rename the {seen[ic_name(s)][:-1]} {ic_name(s)!r}."
                )

    def _parse(self, value: Any, where: str, allowed: set[str] | None) -> sympy.Expr:
        """A sympy expression from a string, number or sympy object, with only `allowed` symbols
        (any symbol when `allowed` is None)."""
        if isinstance(value, bool) or value is None:
            raise ModelError(f"{where[0].upper()}{where[1:]} must be an expression. Got {value!r}.")
        if isinstance(value, str):
            if not value.strip():
                raise ModelError(f"{where[0].upper()}{where[1:]} is an empty string.")
            # A bare name sympy knows (I, E, S, N, beta, ...) but the model does not declare is an
            # undefined symbol, not sympy's constant or function.
            bare = self._bare_names(value)
            if bare and allowed is not None:
                self._undefined(value, where, bare, allowed)
            try:
                expr = parse_expr(
                    value, local_dict=dict(self._symbols), transformations=_TRANSFORMS
                )
            except Exception as exc:  # sympy raises many kinds (SyntaxError, TypeError, ...)
                raise ModelError(
                    f"{where[0].upper()}{where[1:]}, {value!r}, could not be parsed by sympy: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        elif isinstance(value, int | float | np.integer | np.floating):
            expr = sympy.sympify(value)
        elif isinstance(value, sympy.Basic):
            # Symbols the user created (perhaps with assumptions) become ours, matched by name.
            expr = value.xreplace(
                {
                    s: self._symbols[s.name]
                    for s in value.free_symbols
                    if isinstance(s, sympy.Symbol) and s.name in self._symbols
                }
            )
        else:
            raise ModelError(
                f"{where[0].upper()}{where[1:]} must be a string, a number or a sympy expression. "
                f"Got {describe(value)}."
            )
        if not isinstance(expr, sympy.Expr):
            raise ModelError(
                f"{where[0].upper()}{where[1:]}, {value!r}, is not an expression (got a "
                f"{type(expr).__name__})."
            )
        undefined = sorted(
            str(s)
            for s in expr.free_symbols
            if allowed is not None and not (isinstance(s, sympy.Symbol) and s.name in allowed)
        )
        if undefined:
            self._undefined(value, where, undefined, allowed)
        functions = sorted(
            {
                type(f).__name__
                for f in expr.atoms(sympy.Function)
                if isinstance(f, sympy.core.function.AppliedUndef)
            }
        )
        if functions:
            raise ModelError(
                f"{where[0].upper()}{where[1:]}, {value!r}, calls unknown function(s) "
                f"{_names_text(functions)}."
            )
        if expr.has(sympy.I) or expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
            raise ModelError(
                f"{where[0].upper()}{where[1:]}, {value!r}, is not a finite real expression "
                f"(it evaluates to {expr})."
            )
        return expr

    def _bare_names(self, text: str) -> list[str]:
        """Names in `text` that are neither declared, nor a constant, nor called as a function."""
        return sorted(
            {
                m.group(1)
                for m in _IDENTIFIER.finditer(text)
                if m.group(1) not in self._symbols
                and m.group(1) not in _CONSTANTS
                and not m.group(2)
            }
        )

    def _undefined(self, value: Any, where: str, names: list[str], allowed: set[str]) -> None:
        known = {"states": self._states, "parameters": self._params, "inputs": self._inputs}
        listing = "; ".join(f"{k} {_names_text(v)}" for k, v in known.items() if v)
        raise ModelError(
            f"{where[0].upper()}{where[1:]}, {value!r}, uses undefined symbol(s) "
            f"{_names_text(names)}. Allowed here: {_names_text(sorted(allowed))} "
            f"({listing}; time {TIME!r})."
        )

    def _parse_ic(self, ic: Mapping[str, Any]) -> dict[str, sympy.Expr | None]:
        unknown_states = [k for k in ic if k not in self._states]
        if unknown_states:
            raise ModelError(
                f"The 'ic' argument of SymbolicModel names unknown state(s) "
                f"{_names_text([str(k) for k in unknown_states])}; the states are "
                f"{_names_text(self._states)}."
            )
        out: dict[str, sympy.Expr | None] = {}
        for s in self._states:
            value = ic.get(s)
            if value is None:
                out[s] = None
                continue
            where = f"the initial condition of {s!r}"
            if isinstance(value, bool):
                raise ModelError(
                    f"The initial condition of {s!r} must be a number, an expression in the "
                    f"parameters, or None (unknown). Got {value!r}."
                )
            if isinstance(value, str | sympy.Basic):
                expr = self._parse(value, where, None)
                bad = (
                    [f"{n!r} is not declared" for n in self._bare_names(value)]
                    if isinstance(value, str)
                    else []
                )
                for sym in sorted(expr.free_symbols, key=str):
                    n = str(sym)
                    if n in self._params or any(n in b for b in bad):
                        continue
                    if n in self._states:
                        bad.append(f"{n!r} is a state")
                    elif n in self._inputs:
                        bad.append(f"{n!r} is an input")
                    elif n == TIME:
                        bad.append(f"{n!r} is the time")
                    else:
                        bad.append(f"{n!r} is not declared")
                if bad:
                    raise ModelError(
                        f"The initial condition of {s!r}, {value!r}, is neither a number nor an "
                        f"expression in the parameters {_names_text(self._params)}: "
                        f"{'; '.join(bad)}. Declare the symbol in params, or leave the initial "
                        "condition unknown (None)."
                    )
            else:
                try:
                    number = float(value)
                except (TypeError, ValueError) as exc:
                    raise ModelError(
                        f"The initial condition of {s!r} must be a number, an expression in the "
                        f"parameters, or None (unknown). Got {describe(value)}."
                    ) from exc
                if not math.isfinite(number):
                    raise ModelError(
                        f"The initial condition of {s!r} must be finite. Got {value!r}."
                    )
                expr = sympy.sympify(value)
            out[s] = expr
        return out

    # -- immutability -----------------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_frozen", False):
            raise AttributeError("SymbolicModel is immutable; build a new model instead.")
        object.__setattr__(self, name, value)

    # -- what the model holds ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def states(self) -> tuple[str, ...]:
        return self._states

    @property
    def params(self) -> tuple[str, ...]:
        """The declared parameters (without the unknown initial conditions)."""
        return self._params

    @property
    def outputs(self) -> tuple[str, ...]:
        return self._outputs

    @property
    def inputs(self) -> tuple[str, ...]:
        return self._inputs

    @property
    def t0(self) -> float:
        return self._t0

    @property
    def rhs(self) -> dict[str, sympy.Expr]:
        """State name → its derivative (sympy)."""
        return dict(self._rhs)

    @property
    def output_exprs(self) -> dict[str, sympy.Expr]:
        return dict(self._output_exprs)

    @property
    def input_exprs(self) -> dict[str, sympy.Expr | None]:
        """Input name → function of ``t`` (sympy), or None for a generic input."""
        return dict(self._input_exprs)

    @property
    def ic(self) -> dict[str, sympy.Expr | None]:
        """State name → initial condition: a number or parameter expression (sympy), None if unknown."""
        return dict(self._ic)

    @property
    def unknown_ic(self) -> tuple[str, ...]:
        """States whose initial condition is unknown."""
        return tuple(s for s in self._states if self._ic[s] is None)

    @property
    def ic_params(self) -> tuple[str, ...]:
        """Names of the unknown initial conditions as parameters: ``"x(0)"`` for state ``x``."""
        return tuple(ic_name(s) for s in self.unknown_ic)

    @property
    def unknowns(self) -> tuple[str, ...]:
        """All unknowns: the parameters, then the unknown initial conditions."""
        return self._params + self.ic_params

    def symbol(self, name: str) -> sympy.Symbol:
        """The sympy symbol of a state, parameter, input, ``t``, or unknown initial condition."""
        if name in self._symbols:
            return self._symbols[name]
        if name in self.ic_params:
            return sympy.Symbol(name)
        raise ModelError(
            f"{name!r} is not a name of this model; the names are "
            f"{_names_text([*self._symbols, *self.ic_params])}."
        )

    def __repr__(self) -> str:
        return (
            f"SymbolicModel({self._name}, states={list(self._states)}, params={list(self._params)}, "
            f"inputs={list(self._inputs)}, outputs={list(self._outputs)}, "
            f"unknown_ic={list(self.unknown_ic)})"
        )

    def __str__(self) -> str:
        lines = [f"SymbolicModel {self._name}"]
        for s in self._states:
            lines.append(f"  d{s}/dt = {self._rhs[s]}")
        for o in self._outputs:
            lines.append(f"  {o} = {self._output_exprs[o]}")
        for u in self._inputs:
            e = self._input_exprs[u]
            lines.append(f"  {u}(t) = {'generic (unspecified)' if e is None else e}")
        for s in self._states:
            e = self._ic[s]
            lines.append(f"  {s}({self._t0:g}) = {'unknown' if e is None else e}")
        return "\n".join(lines)

    # -- the numeric model ----------------------------------------------------------------------------
    def substituted(self, inputs: Mapping[str, Any] | None = None) -> tuple[dict, dict]:
        """The right-hand sides and outputs with the inputs replaced by their functions of ``t``.

        `inputs` overrides the model's input functions (name → function of t, or None). Raises
        `ModelError` for an input that is still unspecified.
        """
        exprs = self.input_functions(inputs)
        missing = [u for u, e in exprs.items() if e is None]
        if missing:
            raise ModelError(
                f"The input(s) {_names_text(missing)} of {self._name!r} are unspecified (generic); "
                "a simulation needs them as functions of t: pass inputs={name: expression}."
            )
        sub = {self._symbols[u]: e for u, e in exprs.items()}
        rhs = {s: e.xreplace(sub) for s, e in self._rhs.items()}
        out = {o: e.xreplace(sub) for o, e in self._output_exprs.items()}
        return rhs, out

    def input_functions(
        self, inputs: Mapping[str, Any] | None = None
    ) -> dict[str, sympy.Expr | None]:
        """Input name → function of ``t`` (None: generic), with `inputs` overriding the model's."""
        exprs = dict(self._input_exprs)
        if inputs is None:
            return exprs
        if not isinstance(inputs, Mapping):
            raise ModelError(
                "The 'inputs' argument must be a dict of input name → function of t (or None for "
                f"a generic input). Got {describe(inputs)}."
            )
        unknown = [u for u in inputs if u not in self._inputs]
        if unknown:
            raise ModelError(
                f"The 'inputs' argument names unknown input(s) {_names_text([str(u) for u in unknown])}; "
                f"the inputs of {self._name!r} are {_names_text(self._inputs)}."
            )
        for u, value in inputs.items():
            exprs[u] = (
                None
                if value is None
                else self._parse(value, f"the input {u!r} (a known function of t)", {TIME})
            )
        return exprs

    def to_ode(
        self,
        *,
        inputs: Mapping[str, Any] | None = None,
        name: str | None = None,
        **solver_options: Any,
    ) -> ODEModel:
        """The same model as a `fimkit.ODEModel` (sympy → JAX), for numeric analysis.

        The ODE model's parameters are `params` followed by `ic_params` (the unknown initial
        conditions, named ``"x(0)"``). `inputs` overrides the input functions; `solver_options`
        (``solver``, ``rtol``, ``atol``, ``max_steps``) go to `ODEModel`.
        """
        unknown_opts = sorted(set(solver_options) - set(SOLVER_OPTIONS))
        if unknown_opts:
            raise ModelError(
                f"SymbolicModel.to_ode got unknown option(s) {_names_text(unknown_opts)}; the "
                f"solver options are {_names_text(SOLVER_OPTIONS)}."
            )
        rhs, out = self.substituted(inputs)
        t = self._symbols[TIME]
        state_syms = [self._symbols[s] for s in self._states]
        param_syms = [self._symbols[p] for p in self._params]
        args = [t, *state_syms, *param_syms]
        rhs_fn = sympy.lambdify(args, [rhs[s] for s in self._states], modules="jax")
        out_fn = sympy.lambdify(args, [out[o] for o in self._outputs], modules="jax")
        params = self._params
        ic_params = self.ic_params
        n_states = len(self._states)

        def field(tt, y, p):
            return rhs_fn(tt, *(y[i] for i in range(n_states)), *(p[q] for q in params))

        def observe(tt, y, p):
            return out_fn(tt, *(y[i] for i in range(n_states)), *(p[q] for q in params))

        field.__name__ = observe.__name__ = self._name
        if not ic_params and all(e.is_number for e in self._ic.values()):
            y0: Any = [float(e) for e in self._ic.values()]
        else:
            ic_fns = []
            for s in self._states:
                e = self._ic[s]
                if e is None:
                    ic_fns.append(("param", ic_name(s)))
                else:
                    ic_fns.append(("expr", sympy.lambdify(param_syms, e, modules="jax")))

            def y0(p):
                vals = []
                for kind, f in ic_fns:
                    if kind == "param":
                        vals.append(p[f])
                    else:
                        vals.append(jnp.asarray(f(*(p[q] for q in params)), dtype=jnp.float64))
                return vals

        return ODEModel(
            field,
            y0,
            observe,
            params=[*params, *ic_params],
            states=list(self._states),
            outputs=list(self._outputs),
            t0=self._t0,
            name=name or self._name,
            **solver_options,
        )


__all__ = ["TIME", "SymbolicModel", "ic_name"]
