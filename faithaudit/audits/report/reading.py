"""One line per tool output, for people: what the answer does with it, and the figures behind that."""

from __future__ import annotations

import re
from collections.abc import Sequence

_VERBS = {
    "decisive": "the answer depends on {id}",
    "supporting": "the answer leans on {id}",
    "distracting": "{id} pulls the answer away",
    "attended_not_relied": "{id} was read but not used",
    "relied_not_attended": "the answer depends on {id} though it got little attention",
    "within_noise": "{id} moved the answer no more than noise",
    "unused": "{id} was ignored",
}


def copies(response: str, output: str) -> bool:
    """The response repeats a number, or three words (12+ characters), from the output."""
    numbers = set(re.findall(r"\d+(?:\.\d+)?", output))
    if any(num in numbers for num in re.findall(r"\d+(?:\.\d+)?", response)):
        return True
    words = response.split()
    runs = (" ".join(words[k : k + 3]) for k in range(len(words) - 2))
    return any(len(run) >= 12 and run in output for run in runs)


def source_reading(
    *,
    source_id: str,
    label: str | None,
    reliance: float | None,
    attention: float | None,
    copied: bool,
    policy_changed: bool | None,
) -> str:
    """``policy_changed``: whether the model's own next action changes without the output."""
    head = _VERBS.get(label or "", "{id} was not measured").format(id=source_id)
    if copied and label in ("decisive", "supporting", "relied_not_attended"):
        head = f"the answer copies {source_id}"
    facts = []
    if reliance is not None:
        facts.append(f"reliance {reliance:.2f} nats")
    if attention is not None:
        facts.append(f"attention {attention:.2f}")
    if policy_changed is not None:
        facts.append("its next action changes without it" if policy_changed else "its next action stays")
    return f"{head} ({'; '.join(facts)})" if facts else head


def agent_reading(lines: Sequence[str]) -> str:
    """'the answer copies calculator#2; weather#1 was read but not used' (the heads of the per-call lines)."""
    return "; ".join(line.split(" (")[0] for line in lines)
