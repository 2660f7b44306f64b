"""``massgen eval``: does the team beat one model, and at what cost? Questions with known
answers (:mod:`~massgen.questions`), graders (:mod:`~massgen.eval.grading`), the methods
compared (:mod:`~massgen.eval.methods`), the resumable run (:mod:`~massgen.eval.runner`),
the report (:mod:`~massgen.eval.report`) and its chart (:mod:`~massgen.eval.chart`).
docs/eval.md describes them."""

from massgen.eval.methods import DEFAULT_METHODS, Method, parse_methods
from massgen.eval.report import EvalReport, MethodScore, build_report
from massgen.eval.runner import assess, evaluate
from massgen.questions import EvalItem, load_items, parse_row

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
