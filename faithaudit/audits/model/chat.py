"""Chat messages for a prompt, and plain text for a model without a chat template."""

from __future__ import annotations

from collections.abc import Sequence


def chat_messages(*, system: str | None, user: str) -> list[dict[str, str]]:
    """The messages a chat template renders: an optional system turn, then the user turn."""
    return ([{"role": "system", "content": system}] if system is not None else []) + [{"role": "user", "content": user}]


def plain_chat(messages: Sequence[dict[str, str]]) -> str:
    """Messages as plain text, for a model without a chat template: a blank line after each turn."""
    out = []
    for m in messages:
        if not m["content"] and m["role"] == "system":
            continue
        prefix = "" if m["role"] in ("system", "user") else f"{m['role']}: "
        out.append(f"{prefix}{m['content']}\n\n")
    return "".join(out)
