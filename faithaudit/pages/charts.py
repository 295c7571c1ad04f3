"""Geometry of the report's attention-vs-reliance scatter: data in, marks and axes out (the template draws them).

x is the attention figure the label rule reads (share over neutral text at the source's position, or share x n),
y is leave-one-out reliance in nats on a signed log scale; both axes are shared by every source. Horizontal lines
are the label thresholds, the grey band is +-noise floor, vertical lines are the attention factors."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from faithaudit.api_schemas import LabelThresholds, SourceReport
from faithaudit.pages.scales import Linear, SymLog

LABEL_COLOURS = {
    "decisive": "#1b7f3b",
    "supporting": "#2563eb",
    "distracting": "#c0262d",
    "attended_not_relied": "#c2610c",
    "relied_not_attended": "#7c3aed",
    "within_noise": "#6b7280",
    "unused": "#6b7280",
}
NO_LABEL = "#9ca3af"
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 760, 420, 64, 150, 16, 48


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def attention_ratio(src: SourceReport, n: int) -> tuple[float | None, bool]:
    """The x of a source and whether it is positional (vs neutral text there) or an even-split ratio."""
    if finite(src.attention_position_ratio):
        return src.attention_position_ratio, True
    if finite(src.attention):
        return src.attention * n, False
    return None, False


@dataclass(frozen=True)
class Point:
    id: str
    x: float
    y: float
    y_lo: float | None
    y_hi: float | None
    colour: str
    title: str


@dataclass(frozen=True)
class Rule:
    at: float  # pixel
    text: str
    kind: str  # css class


@dataclass
class Scatter:
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: float = WIDTH - RIGHT
    top: int = TOP
    bottom: float = HEIGHT - BOTTOM
    points: list[Point] = field(default_factory=list)
    unplotted: list[str] = field(default_factory=list)  # sources without attention or reliance
    hrules: list[Rule] = field(default_factory=list)
    vrules: list[Rule] = field(default_factory=list)
    band: tuple[float, float] | None = None  # pixel y of +floor and -floor
    xticks: list[tuple[float, str]] = field(default_factory=list)
    yticks: list[tuple[float, str]] = field(default_factory=list)
    zero_y: float = 0.0
    x_title: str = ""


def scatter(sources: list[SourceReport], floor: float | None, rules: LabelThresholds) -> Scatter:
    chart = Scatter()
    n = len(sources)
    xs = {s.id: attention_ratio(s, n) for s in sources}
    positional = any(p for _, p in xs.values())
    ratios = [x for x, _ in xs.values() if finite(x)]
    x = Linear(0.0, max([2.0, rules.attended_factor * 1.2, *(r * 1.1 for r in ratios)]), LEFT, chart.right)
    y = SymLog(_extent(sources, floor, rules), chart.bottom, TOP)
    chart.xticks, chart.yticks, chart.zero_y = x.ticks(), y.ticks(), y(0.0)
    chart.x_title = "attention ÷ neutral text at its position (×)" if positional else "attention share × sources (×)"
    if finite(floor) and floor > 0:
        chart.band = (y(floor), y(-floor))
    chart.hrules = [
        Rule(y(rules.decisive), f"decisive ≥ {rules.decisive:g}", "decisive"),
        Rule(y(rules.supporting), f"supporting ≥ {rules.supporting:g}", "supporting"),
        Rule(y(rules.distracting), f"distracting ≤ {rules.distracting:g}", "distracting"),
    ]
    chart.vrules = [
        Rule(x(rules.not_attended_factor), f"{rules.not_attended_factor:g}×", "not-attended"),
        Rule(x(rules.attended_factor), f"{rules.attended_factor:g}×", "attended"),
    ]
    for src in sources:
        ratio = xs[src.id][0]
        if not (finite(ratio) and finite(src.reliance)):
            chart.unplotted.append(src.id)
            continue
        lo, hi = src.reliance_interval or (None, None)
        chart.points.append(
            Point(
                id=src.id,
                x=round(x(ratio), 1),
                y=round(y(src.reliance), 1),
                y_lo=None if lo is None else round(y(lo), 1),
                y_hi=None if hi is None else round(y(hi), 1),
                colour=LABEL_COLOURS.get(src.label or "", NO_LABEL),
                title=f"{src.id}: {src.label or 'no label'}; reliance {src.reliance:+.2f} nats, attention {ratio:.2f}×",
            )
        )
    return chart


def _extent(sources: list[SourceReport], floor: float | None, rules: LabelThresholds) -> float:
    values = [abs(s.reliance) for s in sources if finite(s.reliance)]
    values += [abs(v) for s in sources if s.reliance_interval for v in s.reliance_interval if finite(v)]
    values += [abs(rules.decisive) * 1.5, abs(rules.distracting) * 1.5, floor or 0.0]
    return max(max(values) * 1.1, 1.0)  # never a zero-height axis
