"""What the reviewers' UI shows, as data: list rows with key figures, a side-by-side comparison of two audits of
the same case, and the trend of context reliance and gate results over time for one tag. Pure over store rows."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from statistics import median
from typing import Any

from faithaudit.pages.charts import LABEL_COLOURS, NO_LABEL
from faithaudit.pages.scales import Linear

PREVIEW_CHARS = 80


def _figure(report: dict | None, *path: str) -> Any:
    node: Any = report or {}
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


@dataclass(frozen=True)
class ListRow:
    id: str
    created: str
    status: str
    query: str
    tags: list[str]
    context_reliance: float | None
    noise_floor: float | None
    top_source: str | None  # "d2 +20.9"
    decisive: int | None
    gate: str  # "passed" | "failed" | "—"


def list_row(row: Any) -> ListRow:
    report = row.report
    sources = _figure(report, "sources") or []
    measured = [s for s in sources if isinstance(s.get("reliance"), (int, float))]
    top = max(measured, key=lambda s: s["reliance"], default=None)
    query = str(row.request.get("query", ""))
    return ListRow(
        id=row.id,
        created=row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        status=row.status,
        query=query if len(query) <= PREVIEW_CHARS else query[: PREVIEW_CHARS - 1] + "…",
        tags=list(row.request.get("tags") or []),
        context_reliance=_figure(report, "summary", "context_reliance"),
        noise_floor=_figure(report, "summary", "noise_floor_nats"),
        top_source=None if top is None else f"{top['id']} {top['reliance']:+.1f}",
        decisive=None if report is None else sum(s.get("label") == "decisive" for s in sources),
        gate={True: "passed", False: "failed"}.get(row.gate_passed, "—"),
    )


@dataclass(frozen=True)
class SourcePair:
    id: str
    label_a: str | None
    label_b: str | None
    reliance_a: float | None
    reliance_b: float | None
    attention_a: float | None
    attention_b: float | None
    delta: float | None  # reliance_b - reliance_a, nats
    changed: bool  # the label differs, or |delta| is beyond both audits' noise floors


@dataclass(frozen=True)
class FigurePair:
    name: str
    a: Any
    b: Any
    changed: bool


@dataclass
class Comparison:
    same_case: bool
    warnings: list[str]
    sources: list[SourcePair]
    figures: list[FigurePair]
    colours: dict[str, str] = field(default_factory=lambda: dict(LABEL_COLOURS))


def compare(a: dict, b: dict) -> Comparison:
    """Two reports of the same case side by side: sources matched by id, changes flagged against the noise."""
    warnings = []
    if a.get("query") != b.get("query"):
        warnings.append("The two audits asked different queries: they are not the same case.")
    by_id_a = {s["id"]: s for s in a.get("sources", [])}
    by_id_b = {s["id"]: s for s in b.get("sources", [])}
    only = sorted(set(by_id_a) ^ set(by_id_b))
    if only:
        warnings.append(f"Sources in only one audit: {', '.join(only)}.")
    floor = max(_figure(a, "summary", "noise_floor_nats") or 0.0, _figure(b, "summary", "noise_floor_nats") or 0.0)
    ids = list(by_id_a) + [i for i in by_id_b if i not in by_id_a]
    pairs = [_pair(i, by_id_a.get(i, {}), by_id_b.get(i, {}), floor) for i in ids]
    figures = [
        _figure_pair(name, _figure(a, *path), _figure(b, *path), floor if unit == "nats" else None)
        for name, path, unit in (
            ("context reliance (nats)", ("summary", "context_reliance"), "nats"),
            ("noise floor (nats)", ("summary", "noise_floor_nats"), None),
            ("context token share", ("summary", "context_token_share"), None),
            ("surrogate LDS", ("summary", "surrogate_lds"), None),
            ("gate passed", ("gate", "passed"), None),
            ("response", ("response",), None),
            ("model", ("model", "name"), None),
        )
    ]
    return Comparison(same_case=not warnings, warnings=warnings, sources=pairs, figures=figures)


def _pair(sid: str, a: dict, b: dict, floor: float) -> SourcePair:
    ra, rb = a.get("reliance"), b.get("reliance")
    delta = None if ra is None or rb is None else rb - ra
    moved = delta is not None and abs(delta) > floor
    return SourcePair(
        id=sid,
        label_a=a.get("label"),
        label_b=b.get("label"),
        reliance_a=ra,
        reliance_b=rb,
        attention_a=a.get("attention"),
        attention_b=b.get("attention"),
        delta=delta,
        changed=a.get("label") != b.get("label") or moved,
    )


def _figure_pair(name: str, a: Any, b: Any, floor: float | None) -> FigurePair:
    if floor is not None and isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return FigurePair(name, a, b, abs(b - a) > floor)
    return FigurePair(name, a, b, a != b)


@dataclass(frozen=True)
class TrendPoint:
    id: str
    x: float
    y: float
    colour: str
    title: str


@dataclass
class Trend:
    tag: str
    count: int
    passed: int
    failed: int
    points: list[TrendPoint] = field(default_factory=list)
    xticks: list[tuple[float, str]] = field(default_factory=list)
    yticks: list[tuple[float, str]] = field(default_factory=list)
    days: list[tuple[str, int, int, float | None]] = field(default_factory=list)  # day, audits, passed, median
    width: int = 760
    height: int = 300
    left: int = 64
    right: int = 740
    top: int = 16
    bottom: int = 260


def trend(tag: str, rows: list[Any]) -> Trend:
    """Succeeded audits carrying ``tag``, oldest first: context reliance over time, coloured by the gate."""
    done = sorted((r for r in rows if r.report is not None), key=lambda r: r.created_at)
    chart = Trend(
        tag=tag,
        count=len(done),
        passed=sum(r.gate_passed is True for r in done),
        failed=sum(r.gate_passed is False for r in done),
    )
    values = [(r, _figure(r.report, "summary", "context_reliance")) for r in done]
    values = [(r, v) for r, v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    chart.days = _days(done)
    if not values:
        return chart
    t0, t1 = values[0][0].created_at.timestamp(), values[-1][0].created_at.timestamp()
    x = Linear(t0, max(t1, t0 + 1.0), chart.left, chart.right)
    lo, hi = min(0.0, *(v for _, v in values)), max(1.0, *(v for _, v in values))
    y = Linear(lo, hi * 1.05, chart.bottom, chart.top)
    chart.yticks = y.ticks()
    chart.xticks = _time_ticks(x, [r.created_at for r, _ in values], long_span=t1 - t0 > 2 * 86400)
    for row, value in values:
        colour = {True: LABEL_COLOURS["decisive"], False: LABEL_COLOURS["distracting"]}.get(row.gate_passed, NO_LABEL)
        gate = {True: "gate passed", False: "gate failed"}.get(row.gate_passed, "no gate")
        chart.points.append(
            TrendPoint(
                id=row.id,
                x=round(x(row.created_at.timestamp()), 1),
                y=round(y(value), 1),
                colour=colour,
                title=f"{row.created_at:%Y-%m-%d %H:%M} · context reliance {value:+.2f} nats · {gate}",
            )
        )
    return chart


def _time_ticks(x: Linear, times: list[datetime], *, long_span: bool, gap: float = 90.0) -> list[tuple[float, str]]:
    """Labelled instants, at least ``gap`` pixels apart and never the same label twice."""
    ticks: list[tuple[float, str]] = []
    for t in times:
        at, text = x(t.timestamp()), t.strftime("%Y-%m-%d" if long_span else "%m-%d %H:%M")
        if not ticks or (at - ticks[-1][0] >= gap and text != ticks[-1][1]):
            ticks.append((round(at, 1), text))
    return ticks


def _days(rows: list[Any]) -> list[tuple[str, int, int, float | None]]:
    by_day: dict[str, list[Any]] = {}
    for r in rows:
        by_day.setdefault(r.created_at.strftime("%Y-%m-%d"), []).append(r)
    out = []
    for day, group in sorted(by_day.items(), reverse=True):
        values = [_figure(r.report, "summary", "context_reliance") for r in group]
        values = [v for v in values if isinstance(v, (int, float))]
        out.append((day, len(group), sum(r.gate_passed is True for r in group), median(values) if values else None))
    return out


def parse_day(value: str | None, field_name: str) -> datetime | None:
    """A YYYY-MM-DD filter as a UTC midnight; ValueError names the field."""
    from datetime import UTC

    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{field_name}: must be a date as YYYY-MM-DD") from None
