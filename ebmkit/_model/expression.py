"""Composition expressions as text: ``"smile + male"``, ``"color.given(red) - 0.5 * shape.given(circle)"``.

``ebmkit compose`` reads its expression with this small grammar; the text is never
evaluated as Python. Grammar (lowest precedence first)::

    expression := term ('|' term)*                 OR (a mixture; see ebmkit.disjunction)
    term       := product (('+' | '-') product)*   AND, AND NOT
    product    := unary (('*' | '/') unary)*       a weight: one side of '*' is a number; '/' divides by a number
    unary      := '-' unary | postfix
    postfix    := atom ('.given(' condition ')')*
    atom       := NUMBER | NAME | '(' expression ')'
    condition  := VALUE | NAME '=' VALUE           a class name, a label index, or attribute = class
    VALUE      := NAME | NUMBER | 'quoted name' | true | false

NAME is a model's name (given with ``--model NAME=RUN_DIR``) or a class name. A bare name of
a model conditioned on a yes/no attribute means that attribute present: ``smile`` is
``smile.given(Smiling=True)`` for a model trained on CelebA's Smiling.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from ebmkit._host.energy import Energy, SumEnergy, disjunction
from ebmkit._host.errors import EbmkitError, did_you_mean_hint


class ExpressionError(EbmkitError):
    """An expression outside the grammar, or naming a model that was not given."""


# -- syntax tree ------------------------------------------------------------------------------
@attrs.frozen
class Model:
    name: str


@attrs.frozen
class Number:
    value: float


@attrs.frozen
class Given:
    inner: Any
    value: str | int | bool
    attribute: str | None = None


@attrs.frozen
class Scaled:
    weight: float
    inner: Any


@attrs.frozen
class Sum:
    terms: tuple


@attrs.frozen
class Or:
    terms: tuple


_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<string>'[^'\\]*'|\"[^\"\\]*\")"
    r"|(?P<op>[-+*/|().,=]))"
)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    tokens, position = [], 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            column = len(text) - len(text[position:].lstrip())
            raise _error(text, column, f"unexpected character {text[column]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind), match.start(kind)))
        position = match.end()
    tokens.append(("end", "", len(text)))
    return tokens


def _error(text: str, column: int, message: str) -> ExpressionError:
    return ExpressionError(f"cannot read the expression: {message}\n  {text}\n  {' ' * column}^\n" + _HELP)


_HELP = (
    " an expression combines model names with + (and), - (and not), | (or), weights (2 * a, a / 2), "
    "parentheses and .given(class), e.g. \"smile + male\" or \"color.given(red) - 0.5 * shape.given(circle)\""
)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.at]

    def take(self, value: str | None = None, kind: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if (value is not None and token[1] != value) or (kind is not None and token[0] != kind):
            wanted = repr(value) if value is not None else f"a {kind}"
            found = "the end" if token[0] == "end" else repr(token[1])
            raise _error(self.text, token[2], f"expected {wanted}, found {found}")
        self.at += 1
        return token

    def parse(self) -> Any:
        if self.peek()[0] == "end":
            raise _error(self.text, 0, "the expression is empty")
        tree = self.expression()
        if self.peek()[0] != "end":
            token = self.peek()
            raise _error(self.text, token[2], f"unexpected {token[1]!r}")
        return tree

    def expression(self) -> Any:
        terms = [self.term()]
        while self.peek()[1] == "|":
            self.take("|")
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else Or(tuple(terms))

    def term(self) -> Any:
        terms = [self.product()]
        while self.peek()[1] in ("+", "-"):
            sign = self.take()[1]
            node = self.product()
            terms.append(node if sign == "+" else _scale(-1.0, node))
        return terms[0] if len(terms) == 1 else Sum(tuple(terms))

    def product(self) -> Any:
        start = self.peek()[2]
        node = self.unary()
        while self.peek()[1] in ("*", "/"):
            op = self.take()[1]
            right_at = self.peek()[2]
            right = self.unary()
            if op == "/":
                if not isinstance(right, Number) or right.value == 0:
                    raise _error(self.text, right_at, "divide only by a non-zero number (a temperature)")
                node = _scale(1.0 / right.value, node)
            elif isinstance(node, Number) and not isinstance(right, Number):
                node = _scale(node.value, right)
            elif isinstance(right, Number) and not isinstance(node, Number):
                node = _scale(right.value, node)
            else:
                raise _error(self.text, start, "'*' multiplies an energy by a number (a weight)")
        return node

    def unary(self) -> Any:
        if self.peek()[1] == "-":
            self.take("-")
            return _scale(-1.0, self.unary())
        return self.postfix()

    def postfix(self) -> Any:
        node = self.atom()
        while self.peek()[1] == ".":
            self.take(".")
            at = self.peek()[2]
            if self.take(kind="name")[1] != "given":
                raise _error(self.text, at, "the only method is .given(class)")
            if isinstance(node, Number):
                raise _error(self.text, at, "a number has no condition")
            self.take("(")
            node = self.condition(node)
            self.take(")")
        return node

    def condition(self, inner: Any) -> Given:
        kind, value, at = self.peek()
        attribute = None
        if kind == "name" and self.tokens[self.at + 1][1] == "=":
            attribute = value
            self.at += 2
            kind, value, at = self.peek()
        if kind == "name":
            self.take()
            parsed: str | int | bool = {"true": True, "True": True, "false": False, "False": False}.get(value, value)
        elif kind == "string":
            self.take()
            parsed = value[1:-1]
        elif kind == "number" and value.isdigit():
            self.take()
            parsed = int(value)
        else:
            raise _error(self.text, at, "given takes a class name, a label index, or attribute = class")
        return Given(inner, parsed, attribute)

    def atom(self) -> Any:
        kind, value, at = self.peek()
        if kind == "number":
            self.take()
            return Number(float(value))
        if kind == "name":
            self.take()
            return Model(value)
        if value == "(":
            self.take("(")
            node = self.expression()
            self.take(")")
            return node
        found = "the end" if kind == "end" else repr(value)
        raise _error(self.text, at, f"expected a model name, a number or '(', found {found}")


def _scale(weight: float, node: Any) -> Any:
    if isinstance(node, Number):
        return Number(weight * node.value)
    if isinstance(node, Scaled):
        return Scaled(weight * node.weight, node.inner)
    return Scaled(weight, node)


def parse(text: str) -> Any:
    """The syntax tree of an expression; :class:`ExpressionError` when it is not in the grammar."""
    tree = _Parser(text).parse()
    if isinstance(tree, Number) or _has_bare_number(tree):
        raise ExpressionError(f"cannot read the expression {text!r}: a number stands alone; weights multiply a model (2 * a)\n{_HELP}")
    return tree


def _has_bare_number(node: Any) -> bool:
    if isinstance(node, Number):
        return True
    if isinstance(node, (Sum, Or)):
        return any(_has_bare_number(t) for t in node.terms)
    if isinstance(node, (Scaled, Given)):
        return _has_bare_number(node.inner)
    return False


def model_names(tree: Any) -> list[str]:
    """The model names an expression uses, in order of first use."""
    if isinstance(tree, Model):
        return [tree.name]
    children = tree.terms if isinstance(tree, (Sum, Or)) else (tree.inner,)
    names: list[str] = []
    for child in children:
        names += [n for n in model_names(child) if n not in names]
    return names


# -- building energies ----------------------------------------------------------------------
def compose(text: str, models: Mapping[str, Energy] | None = None, **by_name: Energy) -> Energy:
    """The energy an expression describes: ``ebmkit.compose("smile + male", smile=E1, male=E2)``.

    The same grammar as ``ebmkit compose``; the text is parsed, never evaluated as Python.
    """
    return build(text, {**(models or {}), **by_name})


def build(text: str, models: Mapping[str, Energy]) -> Energy:
    """The energy an expression describes, from the models it names."""
    tree = parse(text)
    for name in model_names(tree):
        if name not in models:
            hint = did_you_mean_hint(name, models)
            given = ", ".join(models) or "none"
            raise ExpressionError(f"the expression names a model {name!r} that was not given{hint} (models given: {given}; add --model {name}=RUN_DIR)")
    return _energy(tree, models)


def _energy(node: Any, models: Mapping[str, Energy]) -> Energy:
    if isinstance(node, Model):
        energy = models[node.name].named(node.name)
        conditioning = energy.conditioning
        if conditioning is None:
            return energy
        if conditioning.is_flag:
            return energy.given(conditioning.attribute)
        raise ExpressionError(
            f"{node.name} is conditioned on {conditioning.attribute}: say which class, e.g. "
            f"{node.name}.given({conditioning.classes[0]}) (classes: {', '.join(conditioning.classes)})"
        )
    if isinstance(node, Given):
        inner = models[node.inner.name].named(node.inner.name) if isinstance(node.inner, Model) else _energy(node.inner, models)
        if node.attribute is not None:
            return inner.given(**{node.attribute: node.value})
        return inner.given(node.value)
    if isinstance(node, Scaled):
        return node.weight * _energy(node.inner, models)
    if isinstance(node, Sum):
        return SumEnergy([_energy(t, models) for t in node.terms])
    return disjunction(*(_energy(t, models) for t in node.terms))


# -- what samples of an expression should carry ---------------------------------------------
@attrs.frozen
class Has:
    """A sample carries ``attribute = value``."""

    attribute: str
    value: str

    def holds(self, labels: Mapping[str, list[str]]) -> list[bool]:
        return [v == self.value for v in labels[self.attribute]]

    def __str__(self) -> str:
        if self.value in (self.attribute, f"not_{self.attribute}"):  # a yes/no attribute
            return self.value.replace("_", " ")
        return f"{self.attribute}={self.value}"


@attrs.frozen
class AllOf:
    parts: tuple

    def holds(self, labels: Mapping[str, list[str]]) -> list[bool]:
        return [all(row) for row in zip(*(p.holds(labels) for p in self.parts), strict=True)]

    def __str__(self) -> str:
        return " and ".join(_bracket(p) for p in self.parts)


@attrs.frozen
class AnyOf:
    parts: tuple

    def holds(self, labels: Mapping[str, list[str]]) -> list[bool]:
        return [any(row) for row in zip(*(p.holds(labels) for p in self.parts), strict=True)]

    def __str__(self) -> str:
        return " or ".join(_bracket(p) for p in self.parts)


@attrs.frozen
class Not:
    part: Any

    def holds(self, labels: Mapping[str, list[str]]) -> list[bool]:
        return [not v for v in self.part.holds(labels)]

    def __str__(self) -> str:
        return f"not {_bracket(self.part)}"


def _bracket(part: Any) -> str:
    return f"({part})" if isinstance(part, (AllOf, AnyOf)) else str(part)


def requirement(text: str, models: Mapping[str, Energy]) -> Has | AllOf | AnyOf | Not | None:
    """What a sample of the expression should carry, read from the conditions of its models:
    ``color.given(red) + shape.given(circle)`` wants color=red and shape=circle; ``a - b``
    wants a and not b; ``a | b`` wants either. Weights other than their sign are ignored.
    None when the expression asks for no attribute (unconditional models)."""
    return _requirement(parse(text), models)


def _requirement(node: Any, models: Mapping[str, Energy]) -> Any:
    if isinstance(node, Model):
        conditioning = models[node.name].conditioning
        return Has(conditioning.attribute, conditioning.attribute) if conditioning is not None and conditioning.is_flag else None
    if isinstance(node, Given):
        conditioning = models[node.inner.name].conditioning if isinstance(node.inner, Model) else None
        if conditioning is None:
            return None
        value = node.value
        index = value if isinstance(value, int) and not isinstance(value, bool) else conditioning.index(value)
        return Has(conditioning.attribute, conditioning.classes[index])
    if isinstance(node, Scaled):
        inner = _requirement(node.inner, models)
        return inner if inner is None or node.weight > 0 else Not(inner)
    parts = [_requirement(t, models) for t in node.terms]
    if isinstance(node, Sum):
        kept = tuple(p for p in parts if p is not None)
        return None if not kept else kept[0] if len(kept) == 1 else AllOf(kept)
    return None if any(p is None for p in parts) else AnyOf(tuple(parts))
