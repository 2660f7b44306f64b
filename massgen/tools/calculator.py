"""``calculator``: arithmetic without ``eval``; a hostile expression is bounded before the
work is done (docs/tools.md, ``calculator``)."""

from __future__ import annotations

import ast
import math
import operator
import re
import time
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from massgen.errors import ToolError
from massgen.tools.base import BuiltinTool, ToolSettings

Number = int | float
_MATH = (
    "sqrt exp log log10 log2 sin cos tan asin acos atan atan2 hypot degrees radians floor ceil gcd"
)
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


class CalculatorSettings(ToolSettings):
    max_digits: int = Field(default=1000, ge=1, le=4000)  # of an integer result
    max_factorial: int = Field(default=1000, ge=1, le=100_000)  # n of factorial/comb/perm
    max_length: int = Field(default=500, ge=1, le=100_000)  # characters
    max_nodes: int = Field(default=200, ge=1, le=2000)  # syntax nodes
    time_limit: float = Field(default=0.1, gt=0, le=10)  # seconds per evaluation


class Calculator(BuiltinTool[CalculatorSettings]):
    """Evaluate an arithmetic expression: numbers, + - * / // % ** and parentheses, and the
    functions sqrt, exp, log, log10, log2, sin, cos, tan, asin, acos, atan, atan2, hypot,
    degrees, radians, floor, ceil, abs, round, min, max, factorial, comb, perm, gcd;
    constants pi, e, tau."""

    def execute(
        self, expression: Annotated[str, Field(description="e.g. sqrt(2) * (3 + 4) ** 2")]
    ) -> str:
        value = evaluate(expression, self.settings)
        if isinstance(value, float):
            return f"{value:.15g}"  # hides binary noise: 2**0.5 * 2**0.5 is 2
        return str(value)


def evaluate(expression: str, settings: CalculatorSettings | None = None) -> Number:
    """The value of ``expression``; :class:`ToolError` for anything refused."""
    s = settings or CalculatorSettings()
    if len(expression) > s.max_length:
        raise ToolError(f"expression longer than {s.max_length} characters")
    # Python's parser recurses (and allocates) per level: a long run of ``-`` or ``1+`` can
    # exhaust its stack or memory before the tree exists to be counted. Every operator,
    # number and name becomes at least one node, so counting them first bounds the parse.
    if len(_TOKEN.findall(expression)) > s.max_nodes:
        raise ToolError(f"expression has more than {s.max_nodes} parts")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError) as e:
        raise ToolError(
            f"not an arithmetic expression: {e.msg if isinstance(e, SyntaxError) else e}"
        ) from None
    except (RecursionError, MemoryError):
        raise ToolError(f"nested more than {MAX_DEPTH} levels deep") from None
    todo: list[tuple[ast.AST, int]] = [(tree, 0)]  # walked without recursion
    nodes = deepest = 0
    while todo:
        node, level = todo.pop()
        nodes, deepest = nodes + 1, max(deepest, level)
        todo.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    if nodes > s.max_nodes:
        raise ToolError(f"expression has more than {s.max_nodes} parts")
    if deepest > MAX_DEPTH:
        raise ToolError(f"nested more than {MAX_DEPTH} levels deep")
    try:
        return _Evaluator(s).eval(tree.body)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError("result too large") from None
    except (ValueError, TypeError) as e:
        raise ToolError(f"math error: {e}") from None


MAX_DEPTH = 200  # deepest tree the (recursive) evaluator walks, far inside Python's stack

_TOKEN = re.compile(r"[0-9.]+(?:[eE][-+]?[0-9]+)?|[A-Za-z_]\w*|\*\*|//|[-+*/%~^&|<>=!@]")


class _Evaluator:
    def __init__(self, settings: CalculatorSettings) -> None:
        self.s = settings
        self.max_bits = math.ceil(settings.max_digits * math.log2(10))
        self.limit = 10**settings.max_digits
        self.deadline = time.monotonic() + settings.time_limit
        self.functions: dict[str, Callable[..., Number]] = {
            **{name: getattr(math, name) for name in _MATH.split()},
            **dict(abs=abs, min=min, max=max),
            "round": self._round,
            "factorial": lambda n: math.factorial(self._cap(n)),
            "comb": lambda n, k: math.comb(self._cap(n), self._cap(k)),
            "perm": lambda n, k=None: math.perm(self._cap(n), None if k is None else self._cap(k)),
        }

    def eval(self, node: ast.AST) -> Number:
        if time.monotonic() > self.deadline:
            raise ToolError(f"took longer than {self.s.time_limit:g}s")
        match node:
            case ast.Constant(value=bool()):
                raise ToolError("booleans are not numbers here")
            case ast.Constant(value=int() | float() as value):
                return self.check(value)
            case ast.Name(id=name) if name in _CONSTANTS:
                return _CONSTANTS[name]
            case ast.UnaryOp(op=ast.USub(), operand=operand):
                return -self.eval(operand)
            case ast.UnaryOp(op=ast.UAdd(), operand=operand):
                return +self.eval(operand)
            case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY:
                a, b = self.eval(left), self.eval(right)
                self.bound(op, a, b)
                return self.check(_BINARY[type(op)](a, b))
            case ast.Call(func=ast.Name(id=name), args=args, keywords=[]) if name in self.functions:
                values = [self.eval(arg) for arg in args]
                return self.check(self.functions[name](*values))
        raise ToolError(f"not allowed in an expression: {_describe(node)}")

    def check(self, value: Any) -> Number:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ToolError("the result is not a real number")
        if isinstance(value, int) and abs(value) >= self.limit:
            raise ToolError(f"result has more than {self.s.max_digits} digits")
        return value

    def bound(self, op: ast.operator, a: Number, b: Number) -> None:
        """Refuse an operation whose integer result would be too large, before doing it."""
        if isinstance(a, int) and isinstance(b, int):
            if isinstance(op, ast.Pow) and b > 0 and abs(a) > 1:
                bits = (abs(a).bit_length() - 1) * b
            else:
                bits = a.bit_length() + b.bit_length() - 1 if isinstance(op, ast.Mult) else 0
            if bits > self.max_bits:
                raise ToolError(f"result has more than {self.s.max_digits} digits")
        elif isinstance(op, ast.Pow) and abs(b) > 1e6 and abs(a) > 1:
            raise ToolError("result too large")

    def _cap(self, n: Number) -> int:
        if not isinstance(n, int) or n < 0:
            raise ToolError("expects a non-negative integer")
        if n > self.s.max_factorial:
            raise ToolError(f"argument above the limit of {self.s.max_factorial}")
        return n

    @staticmethod
    def _round(x: Number, digits: Number = 0) -> Number:
        if not isinstance(digits, int) or abs(digits) > 100:
            raise ToolError("round() digits must be an integer within ±100")
        return round(x, digits) if digits else round(x)


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return f"the name {node.id!r}"
    if isinstance(node, ast.Call):
        func = node.func
        return f"calling {func.id!r}" if isinstance(func, ast.Name) else "this call"
    if isinstance(node, ast.Constant):
        return f"the constant {node.value!r}"
    return type(node).__name__.lower()
