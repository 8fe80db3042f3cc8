"""Model parameters declared once: name, type, default, constraint and help, checked in one place.

A model lists its ``Param``s; ``Param.check`` refuses a bad value with one line
naming the parameter, the value and what is allowed. The command line builds its
options from the same declarations (``sparseidx_cli.build``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

from ..errors import DataError


class ParamError(DataError):
    """A model parameter outside what its declaration allows; ``name`` says which."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class Range:
    """Numbers between ``low`` and ``high`` (either may be None), each end open or closed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def check(self, value) -> bool:
        """Whether ``value`` lies in the range."""
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'<' if self.high_open else '<='} {self.high:g}"


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of names."""

    choices: tuple[str, ...]

    def check(self, value) -> bool:
        """Whether ``value`` is one of the choices."""
        return value in self.choices

    def __str__(self) -> str:
        return "one of " + ", ".join(self.choices)


POSITIVE = Range(0, low_open=True)
AT_LEAST_1 = Range(1)
NON_NEGATIVE = Range(0)


@dataclass(frozen=True)
class Param:
    """One model parameter: its name, type (int, float, str or bool), default, constraint and help.

    ``also`` lists values accepted besides the constraint's (``"auto"``, or None for
    "not given"); ``cli=False`` keeps a parameter off the command line.
    """

    name: str
    type: type
    default: object
    help: str
    constraint: Range | OneOf | None = None
    also: tuple = ()
    cli: bool = True

    def allowed(self, none: bool = True) -> str:
        """What the parameter takes, in words (``none=False`` leaves out None, which a command line cannot give)."""
        kind = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string"}[self.type]
        what = kind if self.constraint is None else f"{kind} {self.constraint}"
        if isinstance(self.constraint, OneOf):
            what = str(self.constraint)
        return " or ".join([what, *(repr(v) for v in self.also if none or v is not None)])

    def check(self, value):
        """``value`` if the declaration allows it, else a ParamError naming the parameter, value and range."""
        if any(value is v or (isinstance(v, str) and value == v) for v in self.also):
            return value
        if not (_is_type(value, self.type) and (self.constraint is None or self.constraint.check(value))):
            shown = repr(value.item() if hasattr(value, "item") else value)
            raise ParamError(self.name, f"{self.name} must be {self.allowed()}, got {shown}")
        return value


def _is_type(value, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, (bool, Integral)) and value in (0, 1)
    if isinstance(value, bool):
        return False
    if kind is int:
        return isinstance(value, Integral)
    if kind is float:
        return isinstance(value, Real) and math.isfinite(value)
    return isinstance(value, kind)


def check_params(declared: tuple[Param, ...], given: dict, model: str) -> dict:
    """Every declared parameter's value (given, else its default), each checked; unknown names refused."""
    names = {p.name for p in declared}
    unknown = sorted(set(given) - names)
    if unknown:
        raise DataError(f"model {model!r} takes no parameter {', '.join(unknown)}; it takes {', '.join(sorted(names))}")
    return {p.name: p.check(given[p.name]) if p.name in given else p.default for p in declared}
