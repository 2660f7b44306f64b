"""What agents remember: short-term strategies, sessions, long-term knowledge.

See ``docs/memory.md``. Nothing here imports a model or a tokenizer.
"""

from massgen.errors import ContextLimitExceeded
from massgen.memory.session import Exchange, SessionInfo, Sessions
from massgen.memory.short_term import Conversation, Folded, MemoryContext
from massgen.tokens import TokenEstimator, context_window, estimate_message, estimate_text

__all__ = [
    "ContextLimitExceeded",
    "Conversation",
    "Exchange",
    "Folded",
    "MemoryContext",
    "SessionInfo",
    "Sessions",
    "TokenEstimator",
    "context_window",
    "estimate_message",
    "estimate_text",
]
