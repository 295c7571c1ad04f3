"""Axis scales for the inline SVG charts: one shared scale per axis, with labelled ticks."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Linear:
    """[lo, hi] onto [start, end] pixels (end < start for a y axis)."""

    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        value = min(max(value, self.lo), self.hi)
        return self.start + (value - self.lo) / (self.hi - self.lo) * (self.end - self.start)

    def ticks(self, count: int = 5) -> list[tuple[float, str]]:
        step = nice_step((self.hi - self.lo) / count)
        first = math.ceil(self.lo / step) * step
        values = [first + i * step for i in range(int((self.hi - first) / step + 1e-9) + 1)]
        return [(self(v), f"{v:g}") for v in values]


@dataclass(frozen=True)
class SymLog:
    """Signed log scale, y = sign(v) log10(1 + |v|): shows 0.5 and 20 nats on one honest axis (ticks in nats)."""

    extent: float  # the axis spans [-extent, +extent]
    start: float
    end: float
    TICKS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

    @staticmethod
    def transform(value: float) -> float:
        return math.copysign(math.log10(1 + abs(value)), value)

    def __call__(self, value: float) -> float:
        top = self.transform(self.extent)
        value = min(max(self.transform(value), -top), top)
        return self.start + (value + top) / (2 * top) * (self.end - self.start)

    def ticks(self) -> list[tuple[float, str]]:
        marks = [t for t in self.TICKS if t <= self.extent * 1.0001]
        if len(marks) > 6:
            marks = [t for t in marks if t >= 1]
        values = [-t for t in reversed(marks)] + [0.0] + marks
        return [(self(v), f"{v:+g}" if v else "0") for v in values]


def nice_step(raw: float) -> float:
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= raw:
            return factor * power
    return 10 * power
