"""Label each source from its measured reliance and attention share (rules documented in the README).

Attention labels win over reliance labels:
  attended_not_relied   attention >= attended_factor / n  and |reliance| < supporting
  relied_not_attended   reliance >= supporting            and attention < not_attended_factor / n
  decisive              reliance >= decisive, or removing it changes the greedy answer (unless reliance is
                        at or below distracting: a flip of the greedy path does not outweigh a measured gain)
  supporting            supporting <= reliance < decisive
  distracting           reliance <= distracting
  unused                otherwise
"""

from __future__ import annotations

from faithaudit.api_schemas import LabelThresholds


def label_source(
    *,
    reliance: float | None,
    attention: float | None,
    answer_changed: bool | None,
    num_sources: int,
    rules: LabelThresholds,
) -> str | None:
    if reliance is None:
        return None
    if attention is not None:
        if attention >= rules.attended_factor / num_sources and abs(reliance) < rules.supporting:
            return "attended_not_relied"
        if reliance >= rules.supporting and attention < rules.not_attended_factor / num_sources:
            return "relied_not_attended"
    if reliance >= rules.decisive or (answer_changed and reliance > rules.distracting):
        return "decisive"
    if reliance >= rules.supporting:
        return "supporting"
    if reliance <= rules.distracting:
        return "distracting"
    return "unused"


def ranks_descending(values: list[float | None]) -> list[int | None]:
    """1 for the largest value; ties keep input order; None stays None."""
    order = sorted((i for i, v in enumerate(values) if v is not None), key=lambda i: (-values[i], i))
    ranks: list[int | None] = [None] * len(values)
    for rank, i in enumerate(order, start=1):
        ranks[i] = rank
    return ranks
