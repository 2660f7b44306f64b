"""R11: the calculator refuses code and bounds its work."""

from __future__ import annotations

import time

import pytest

from massgen.errors import ConfigError, ToolError
from massgen.tools import Calculator
from massgen.tools.calculator import CalculatorSettings, evaluate


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2 ** 10", 1024),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("sqrt(16) + abs(-2)", 6.0),
        ("factorial(10)", 3628800),
        ("round(pi, 3)", 3.142),
        ("max(1, 5, 3) - min(4, 2)", 3),
        ("comb(10, 3)", 120),
        ("10 ** -2", 0.01),
    ],
)
def test_arithmetic(expression: str, value: float) -> None:
    assert evaluate(expression) == pytest.approx(value)


HOSTILE = [
    "__import__('os').system('echo pwned')",
    "().__class__.__bases__[0].__subclasses__()",
    "(1).__class__",
    "open('/etc/passwd').read()",
    "globals()",
    "eval('1+1')",
    "(lambda: 1)()",
    "[x for x in range(10**9)]",
    "'a' * 10**9",
    "pi.real",
    "sqrt.__globals__",
    "x := 1",
    "1 if True else 2",
    "True + 1",
]


@pytest.mark.parametrize("expression", HOSTILE)
def test_code_is_refused(expression: str) -> None:
    with pytest.raises(ToolError):
        evaluate(expression)


HUGE = [
    "9**9**9",
    "10**10**10",
    "(2**4000) * (2**4000)",
    "factorial(10**6)",
    "factorial(100000)",
    "comb(10**9, 10**5)",
    "perm(10**7)",
    "2.0 ** 10**7",
    "exp(10**6)",
    "-(9**999999)",
    "1" * 400 + "**" + "9" * 50,
]


@pytest.mark.parametrize("expression", HUGE)
def test_huge_work_is_refused_fast(expression: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ToolError):
        evaluate(expression)
    assert time.perf_counter() - started < 0.1


async def test_through_the_tool_interface_within_100ms() -> None:
    calc = Calculator()
    for expression in ["9**9**9", "factorial(99999)", "__import__('os')", "().__class__"]:
        started = time.perf_counter()
        with pytest.raises(ToolError):
            await calc.run({"expression": expression})
        assert time.perf_counter() - started < 0.1
    assert await calc.run({"expression": "2**0.5 * 2**0.5"}) == "2"


def test_limits_are_settings() -> None:
    small = CalculatorSettings(max_digits=3, max_factorial=5, max_length=10)
    assert evaluate("999", small) == 999
    for expression in ("1000 * 1", "factorial(6)", "1+1+1+1+1+1"):
        with pytest.raises(ToolError):
            evaluate(expression, small)
    with pytest.raises(ConfigError):
        Calculator(max_digits=0)


def test_long_and_deep_expressions_are_refused() -> None:
    with pytest.raises(ToolError, match="longer than"):
        evaluate("1+" * 600 + "1")
    with pytest.raises(ToolError):
        evaluate("-" * 300 + "1")
    with pytest.raises(ToolError):
        evaluate("(" * 300 + "1" + ")" * 300)


@pytest.mark.parametrize(
    "expression",
    ["-" * 99_999 + "1", "1+" * 49_999 + "1", "(" * 5_000 + "1" + ")" * 5_000, "2**" * 9_000 + "2"],
)
def test_raised_limits_still_bound_the_parse(expression: str) -> None:
    # With max_length raised, a long run of operators used to escape as MemoryError or
    # RecursionError from Python's parser; it must be a tool error like any other refusal.
    settings = CalculatorSettings(max_length=100_000, max_nodes=2_000)
    with pytest.raises(ToolError):
        evaluate(expression, settings)


def test_deep_but_small_expression_is_refused_before_the_evaluator_recurses() -> None:
    settings = CalculatorSettings(max_length=100_000, max_nodes=2_000)
    with pytest.raises(ToolError, match="levels deep"):
        evaluate("-" * 900 + "1", settings)
    assert evaluate("-" * 150 + "1", settings) == 1
