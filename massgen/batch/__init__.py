"""Batch runs: many tasks, one team, resumable output."""

from massgen.batch.files import BatchTask, ResultLog, from_strings, read_tasks, task_id
from massgen.batch.runner import BatchResult, BatchSummary, run_batch

__all__ = [
    "BatchResult",
    "BatchSummary",
    "BatchTask",
    "ResultLog",
    "from_strings",
    "read_tasks",
    "run_batch",
    "task_id",
]
