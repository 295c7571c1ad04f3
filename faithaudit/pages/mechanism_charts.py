"""Geometry of the mechanism section's charts (the template draws them): per traced source, the layer curves
(span trace; attention and MLP restored at the source and after it) on one recovered-fraction axis, and a heads
scatter (attention to the source against the recovered fraction)."""

from __future__ import annotations

from dataclasses import dataclass, field

from faithaudit.api_schemas.report import MechanismSource
from faithaudit.pages.scales import Linear

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 640, 280, 56, 170, 14, 40
CURVES = (  # field, legend, colour, dash
    ("restore_source_residual", "residual at source", "#111827", ""),
    ("restore_attention_at_source", "attention at source", "#93c5fd", "4 3"),
    ("restore_mlp_at_source", "MLP at source", "#fdba74", "4 3"),
    ("restore_attention_after", "attention after source", "#2563eb", ""),
    ("restore_mlp_after", "MLP after source", "#c2610c", ""),
)


@dataclass
class Curve:
    name: str
    legend: str
    colour: str
    dash: str
    points: str  # SVG polyline points


@dataclass
class HeadDot:
    x: float
    y: float
    title: str
    flagged: str  # "causal-not-attending" | "attending-not-causal" | ""


@dataclass
class MechanismChart:
    source: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: float = WIDTH - RIGHT
    top: int = TOP
    bottom: float = HEIGHT - BOTTOM
    curves: list[Curve] = field(default_factory=list)
    xticks: list[tuple[float, str]] = field(default_factory=list)
    yticks: list[tuple[float, str]] = field(default_factory=list)
    zero_y: float = 0.0
    heads: list[HeadDot] = field(default_factory=list)
    head_xticks: list[tuple[float, str]] = field(default_factory=list)
    head_yticks: list[tuple[float, str]] = field(default_factory=list)


def mechanism_charts(sections: list[MechanismSource] | None) -> list[MechanismChart]:
    return [_chart(m) for m in sections or [] if m.layers]


def _chart(m: MechanismSource) -> MechanismChart:
    chart = MechanismChart(source=m.source)
    values = [getattr(row, name) for row in m.layers for name, *_ in CURVES]
    lo, hi = min(-0.1, *values), max(1.1, *values)
    x = Linear(0.0, max(len(m.layers) - 1, 1), LEFT, chart.right)
    y = Linear(lo, hi, chart.bottom, TOP)
    chart.xticks, chart.yticks, chart.zero_y = x.ticks(), y.ticks(), y(0.0)
    for name, legend, colour, dash in CURVES:
        pts = " ".join(f"{x(row.layer):.1f},{y(getattr(row, name)):.1f}" for row in m.layers)
        chart.curves.append(Curve(name, legend, colour, dash, pts))
    if m.heads:
        restores = [h.restore for h in m.heads]
        hx = Linear(0.0, max(0.1, *(h.attention_to_source for h in m.heads)) * 1.05, LEFT, chart.right)
        hy = Linear(min(-0.1, *restores), max(0.5, *restores) * 1.05, chart.bottom, TOP)
        chart.head_xticks, chart.head_yticks = hx.ticks(), hy.ticks()
        causal = {tuple(p) for p in m.causal_not_attending_heads}
        attending = {tuple(p) for p in m.attending_not_causal_heads}
        for h in m.heads:
            key = (h.layer, h.head)
            flag = "causal-not-attending" if key in causal else "attending-not-causal" if key in attending else ""
            chart.heads.append(
                HeadDot(
                    x=round(hx(h.attention_to_source), 1),
                    y=round(hy(h.restore), 1),
                    title=f"head {h.layer}.{h.head}: restores {h.restore:.0%}, zeroing drops "
                    f"{h.ablation_drop_nats:+.2f} nats, attention to {m.source} {h.attention_to_source:.0%}",
                    flagged=flag,
                )
            )
    return chart
