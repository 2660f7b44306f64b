"""``massgen eval``: does the team beat one model, and at what cost? Questions with known
answers (:mod:`~massgen.eval.data`), graders (:mod:`~massgen.eval.grading`), the methods
compared (:mod:`~massgen.eval.methods`), the resumable run (:mod:`~massgen.eval.runner`),
the report (:mod:`~massgen.eval.report`) and its chart (:mod:`~massgen.eval.chart`).
docs/eval.md describes them."""

from massgen.eval.data import EvalItem, load_items, parse_row
from massgen.eval.methods import DEFAULT_METHODS, Method, parse_methods
from massgen.eval.report import EvalReport, MethodScore, build_report
from massgen.eval.runner import assess, evaluate

__all__ = [
    "DEFAULT_METHODS",
    "EvalItem",
    "EvalReport",
    "Method",
    "MethodScore",
    "assess",
    "build_report",
    "evaluate",
    "load_items",
    "parse_methods",
    "parse_row",
]
