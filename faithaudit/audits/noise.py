"""The audit's own error: the placebo noise floor, z and p of a reliance against the placebos, intervals over
document orders, and how stable the top source is. Pure functions over arrays (nats)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NoiseFloor:
    placebo_reliance: np.ndarray  # [P] log p(resp | with placebo) - log p(resp | without), nats
    floor: float  # 90th percentile of |placebo reliance| (numpy method="higher")
    mean: float
    sd: float | None  # sample SD (ddof=1); None with fewer than 2 placebos

    @classmethod
    def of(cls, placebo_reliance: np.ndarray) -> NoiseFloor:
        values = np.asarray(placebo_reliance, dtype=np.float64)
        floor = float(np.percentile(np.abs(values), 90, method="higher"))
        sd = float(np.std(values, ddof=1)) if len(values) >= 2 else None
        return cls(placebo_reliance=values, floor=floor, mean=float(values.mean()), sd=sd)

    def z(self, reliance: float) -> float | None:
        """(reliance - placebo mean) / placebo SD; None when the SD is 0 or unknown."""
        return None if not self.sd else (reliance - self.mean) / self.sd

    def p(self, reliance: float) -> float:
        """(1 + #{placebos with |reliance| >= |r|}) / (P + 1): how often noise alone is this large."""
        larger = int(np.sum(np.abs(self.placebo_reliance) >= abs(reliance)))
        return (1 + larger) / (len(self.placebo_reliance) + 1)


def order_intervals(order_reliance: np.ndarray) -> list[tuple[float, float]]:
    """[min, max] of each source's reliance over the orders (rows: orders, columns: sources)."""
    lows, highs = order_reliance.min(axis=0), order_reliance.max(axis=0)
    return [(float(lo), float(hi)) for lo, hi in zip(lows, highs, strict=True)]


def floor_intervals(reliance: np.ndarray, floor: float) -> list[tuple[float, float]]:
    """reliance +- floor: the interval of a source whose order cannot change (an agent trace, one document)."""
    return [(float(r - floor), float(r + floor)) for r in reliance]


def top1_stability(order_reliance: np.ndarray) -> float:
    """Share of orders whose reliance top-1 is the given order's (row 0) top-1."""
    tops = np.argmax(order_reliance, axis=1)
    return float(np.mean(tops == tops[0]))


def seeded_orders(num_documents: int, count: int, *, seed: int) -> list[list[int]]:
    """``count`` distinct permutations of the documents other than the given order (fewer when there are not
    that many), drawn from a seeded generator."""
    rng = np.random.default_rng(seed + ORDER_SEED_OFFSET)
    seen = {tuple(range(num_documents))}
    out: list[list[int]] = []
    possible = int(np.prod(np.arange(1, num_documents + 1))) - 1
    while len(out) < min(count, possible):
        perm = tuple(int(k) for k in rng.permutation(num_documents))
        if perm not in seen:
            seen.add(perm)
            out.append(list(perm))
    return out


ORDER_SEED_OFFSET = 3_000_017  # document orders use seed + this
