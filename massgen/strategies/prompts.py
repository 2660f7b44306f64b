"""Every prompt the strategies send, short and exact (tokens are money). Peer answers are
wrapped in ``<answer label="X">`` blocks, for models and the replay backend, and clipped."""

from __future__ import annotations

from collections.abc import Sequence

from massgen.types import ToolSpec

VOTE_TOOL = ToolSpec(
    name="vote",
    description="Vote for the best answer.",
    parameters={
        "type": "object",
        "properties": {
            "label": {"type": "string", "description": "label of the best answer"},
            "reason": {"type": "string", "description": "a few words"},
        },
        "required": ["label"],
    },
)
REVISE_TOOL = ToolSpec(
    name="revise",
    description="Replace your answer with a better one.",
    parameters={
        "type": "object",
        "properties": {"answer": {"type": "string", "description": "your full new answer"}},
        "required": ["answer"],
    },
)
REVIEW_TOOLS = (VOTE_TOOL, REVISE_TOOL)

JSON_REPLY = (
    'Reply with JSON only: {"vote": "<label>", "reason": "<few words>"} '
    'or {"revise": "<your full new answer>"}.'
)
TOOL_REPLY = "Call exactly one tool: vote or revise."


def clip(text: str, budget_tokens: int) -> str:
    """Cut ``text`` to about ``budget_tokens`` tokens (4 characters each)."""
    limit = max(budget_tokens, 1) * 4
    text = text.strip()
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def answer_block(label: str, text: str) -> str:
    return f'<answer label="{label}">\n{text}\n</answer>'


def review_prompt(
    task: str, own_label: str, answers: Sequence[tuple[str, str]], *, tools: bool
) -> str:
    """The review turn: the task, the labelled answers (own included), how to reply."""
    blocks = "\n".join(answer_block(label, text) for label, text in answers)
    how = TOOL_REPLY if tools else JSON_REPLY
    return (
        f"Task: {task}\n\nAnswers (yours is {own_label}):\n{blocks}\n\n"
        "Vote for the best answer (yours included), or revise yours if it is wrong or "
        f"incomplete. {how}"
    )


def reprompt(tools: bool) -> str:
    """Sent once after a malformed review reply."""
    return "Your reply was not valid. " + (TOOL_REPLY if tools else JSON_REPLY)


def synthesis_prompt(task: str, answers: Sequence[tuple[str, str]], tally: dict[str, int]) -> str:
    blocks = "\n".join(answer_block(label, text) for label, text in answers)
    votes = ", ".join(f"{label}: {n}" for label, n in tally.items()) or "none"
    return (
        f"Task: {task}\n\nThe team's answers:\n{blocks}\n\nVotes: {votes}\n\n"
        "Write the single best final answer, merging what is right in them. "
        "Give only the answer."
    )


def aggregate_prompt(task: str, answers: Sequence[tuple[str, str]]) -> str:
    blocks = "\n".join(answer_block(label, text) for label, text in answers)
    return (
        f"Task: {task}\n\nIndependent answers:\n{blocks}\n\n"
        "Synthesize them into one best answer: keep what is correct, fix what is wrong. "
        "Give only the answer."
    )


def step_prompt(task: str, previous: Sequence[tuple[str, str]]) -> str:
    if not previous:
        return task
    blocks = "\n".join(f'<step agent="{name}">\n{text}\n</step>' for name, text in previous)
    return f"Task: {task}\n\nWork so far:\n{blocks}\n\nDo your part."
