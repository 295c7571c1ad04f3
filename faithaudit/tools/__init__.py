"""Tools for agent replay: a registry of deterministic built-ins and recorded tools; trace converters."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faithaudit.audits.prompt.agent import AgentLayout
    from faithaudit.tools.registry import ToolRegistry


def registry_for(layout: AgentLayout) -> ToolRegistry:
    """The registry an agent replay calls: the calculator computes; other tools answer from the trace."""
    from faithaudit.tools.registry import replay_registry

    return replay_registry(layout.steps)
