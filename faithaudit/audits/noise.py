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


def order_sensitive(reliance: np.ndarray, floor: float, *, distracting: float) -> np.ndarray:
    """[n] bool: the sources whose label another document order could change. A label other than
    ``within_noise`` needs an interval wholly at or above max(supporting, floor), or above the floor with a counted
    answer flip, or at or below min(distracting, -floor) (``report.labels``); an interval over orders always holds
    the given order's reliance. So a source whose reliance lies strictly between min(distracting, -floor) and the
    floor is ``within_noise`` under any orders (attention labels read only that), and re-scoring it in other
    orders could change nothing the audit decides."""
    r = np.asarray(reliance, dtype=np.float64)
    return (r >= floor) | (r <= min(distracting, -floor))


def order_intervals(order_reliance: np.ndarray, floor: float) -> list[tuple[float, float]]:
    """[min, max] of each source's reliance over the orders (rows: orders, the given one first; columns:
    sources); reliance +- floor for a source not re-scored in other orders (NaN there: ``order_sensitive``)."""
    given, others = order_reliance[0], order_reliance[1:]
    measured = ~np.isnan(others).any(axis=0)
    lows = np.where(measured, order_reliance.min(axis=0), given - floor)
    highs = np.where(measured, order_reliance.max(axis=0), given + floor)
    return [(float(lo), float(hi)) for lo, hi in zip(lows, highs, strict=True)]


def floor_intervals(reliance: np.ndarray, floor: float) -> list[tuple[float, float]]:
    """reliance +- floor: the interval of a source whose order cannot change (an agent trace, one document)."""
    return [(float(r - floor), float(r + floor)) for r in reliance]


def top1_stability(order_reliance: np.ndarray) -> float | None:
    """Share of orders whose reliance top-1 is the given order's (row 0) top-1, among the sources scored in
    every order; None when the given top-1 was not (no order could change its label: nothing is relied on)."""
    measured = ~np.isnan(order_reliance).any(axis=0)
    if not measured[int(np.argmax(order_reliance[0]))]:
        return None
    tops = np.argmax(np.where(measured, order_reliance, -np.inf), axis=1)
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
