"""What agents remember: short-term strategies, sessions, long-term knowledge (docs/memory.md)."""

from massgen.errors import ContextLimitExceeded
from massgen.memory.session import Exchange, SessionInfo, Sessions
from massgen.memory.short_term import Conversation, Folded, MemoryContext

__all__ = [
    "ContextLimitExceeded",
    "Conversation",
    "Exchange",
    "Folded",
    "MemoryContext",
    "SessionInfo",
    "Sessions",
]
