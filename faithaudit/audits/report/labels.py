"""Label each source from its reliance interval against the noise floor, and say why (rules in the README).

With ``lo, hi`` the reliance interval (over document orders; reliance +- floor for a trace or one order) and
``floor`` the placebo noise floor (0 without placebos):

  decisive              lo >= max(decisive, floor), or a counted answer flip and lo > floor
  attended_not_relied   attention ratio >= attended_factor and the source is not supporting, distracting or decisive
  relied_not_attended   supporting, but attention ratio < not_attended_factor
  supporting            lo >= max(supporting, floor)
  distracting           hi <= min(distracting, -floor)
  within_noise          otherwise

The attention ratio is the source's share over what neutral text gets at its position (the attention baseline),
or, without a baseline, its share x n (1 = an even split). Attention labels never override ``decisive``. A flip
counts only when the greedy answer is stable (``flips``).
"""

from __future__ import annotations

from dataclasses import dataclass

from faithaudit.api_schemas import LabelThresholds


@dataclass(frozen=True)
class Verdict:
    label: str | None
    reason: str | None


def label_source(
    *,
    reliance: float | None,
    interval: tuple[float, float] | None,
    floor: float,
    attention_ratio: float | None,
    positional: bool,
    flip_counted: bool,
    rules: LabelThresholds,
) -> Verdict:
    if reliance is None:
        return Verdict(None, None)
    lo, hi = interval if interval is not None else (reliance, reliance)
    span = f"reliance {reliance:+.2f} nats, interval [{lo:+.2f}, {hi:+.2f}], noise floor {floor:.2f}"
    if lo >= max(rules.decisive, floor):
        return Verdict("decisive", f"{span}: the whole interval is above max({rules.decisive:g}, floor)")
    if flip_counted and lo > floor:
        return Verdict("decisive", f"{span}: the answer loses its answer span without it, and the interval is above")
    measured = _by_reliance(lo, hi, floor, rules)
    if attention_ratio is not None:
        many, few, basis = rules.attended_factor, rules.not_attended_factor, _basis(positional)
        if measured == "within_noise" and attention_ratio >= many:
            why = f"{span}, attention {attention_ratio:.2f}x {basis} >= {many:g}x: read, not used"
            return Verdict("attended_not_relied", why)
        if measured == "supporting" and attention_ratio < few:
            why = f"{span}, attention {attention_ratio:.2f}x {basis} < {few:g}x: used, barely read"
            return Verdict("relied_not_attended", why)
    reasons = {
        "supporting": f"the whole interval is above max({rules.supporting:g}, floor)",
        "distracting": f"the whole interval is below min({rules.distracting:g}, -floor)",
        "within_noise": "the interval reaches into the noise",
    }
    return Verdict(measured, f"{span}: {reasons[measured]}")


def _basis(positional: bool) -> str:
    return "neutral text at its position" if positional else "an even split"


def _by_reliance(lo: float, hi: float, floor: float, rules: LabelThresholds) -> str:
    if lo >= max(rules.supporting, floor):
        return "supporting"
    if hi <= min(rules.distracting, -floor):
        return "distracting"
    return "within_noise"


def ranks_descending(values: list[float | None]) -> list[int | None]:
    """1 for the largest value; ties keep input order; None stays None."""
    order = sorted((i for i, v in enumerate(values) if v is not None), key=lambda i: (-values[i], i))
    ranks: list[int | None] = [None] * len(values)
    for rank, i in enumerate(order, start=1):
        ranks[i] = rank
    return ranks
