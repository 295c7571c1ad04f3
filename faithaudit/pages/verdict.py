"""The verdict card's one-line reading of a whole audit, from the report alone (old reports re-render too)."""

from __future__ import annotations

from dataclasses import dataclass

from faithaudit.api_schemas import AuditReport, SourceReport

RELIED = ("decisive", "supporting", "relied_not_attended")


@dataclass(frozen=True)
class Verdict:
    reading: str  # one sentence: what the answer relies on, what context does, what was only read
    tone: str  # "relied" | "parametric" | "unclear": the card's colour
    caveats: list[str]  # what limits the reading: noise floor, unstable labels, proxy model, flips ignored


def _figure(src: SourceReport) -> str:
    pair = src.reliance_interval
    interval = "" if pair is None else f" [{pair[0]:+.1f}, {pair[1]:+.1f}]"
    return f"{src.id} ({src.reliance:+.1f} nats{interval})"


def _ids(sources: list[SourceReport], label: str) -> list[str]:
    return [s.id for s in sources if s.label == label]


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def verdict(report: AuditReport) -> Verdict:
    s, sources = report.summary, report.sources
    relied = sorted((x for x in sources if x.label in RELIED and x.reliance is not None), key=lambda x: -x.reliance)
    parts = [
        f"the answer relies on {_and([_figure(x) for x in relied])}"
        if relied
        else "no source is relied on beyond the noise"
    ]
    if s.context_reliance is not None:
        if s.parametric:
            parts.append(
                f"without any context it keeps its probability (context adds {s.context_reliance:+.1f} "
                "nats): the answer is parametric"
            )
        else:
            parts.append(f"without any context it collapses ({-s.context_reliance:+.1f} nats)")
    for label, phrase in (
        ("attended_not_relied", "attended but not relied on"),
        ("distracting", "pulls against the answer"),
    ):
        ids = _ids(sources, label)
        if ids:
            parts.append(f"{_and(ids)} {'is' if len(ids) == 1 else 'are'} {phrase}")
    reading = "; ".join(parts)
    tone = "parametric" if s.parametric else ("relied" if relied else "unclear")
    return Verdict(reading=reading[0].upper() + reading[1:] + ".", tone=tone, caveats=_caveats(report))


def _caveats(report: AuditReport) -> list[str]:
    s = report.summary
    notes = []
    if s.noise_floor_nats is None:
        notes.append("No placebo controls ran: there is no noise floor, so small reliances cannot be told from noise.")
    else:
        notes.append(f"Noise floor {s.noise_floor_nats:.2f} nats from {len(s.placebo_reliance or [])} placebo sources.")
    unstable = [f.split(": ", 1)[1] for f in s.flags if f.startswith("unstable_label: ")]
    if unstable:
        notes.append(f"Labels of {_and(unstable)} change under sampling or paraphrase.")
    if s.flips_counted is False:
        notes.append("Answer flips were not counted: the greedy answer is unstable under placebo insertions.")
    if report.model.is_proxy:
        notes.append(f"Measured on the local proxy {report.model.name}, not on {report.model.proxy_for}.")
    return notes
