"""LLM agents and the handles strategies use to reach them."""

from massgen.agents.agent import Agent
from massgen.agents.handle import AgentHandle, LocalHandle
from massgen.types import Turn

__all__ = ["Agent", "AgentHandle", "LocalHandle", "Turn"]
