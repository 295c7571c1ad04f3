"""Orders re-score only the sources an order could move (``noise.order_sensitive``): every label equals the one
with every source re-scored, over random reliance, floors and orders (the band's bounds are the labels' own)."""

from __future__ import annotations

import numpy as np

from faithaudit.api_schemas import LabelThresholds
from faithaudit.audits.noise import order_intervals, order_sensitive, top1_stability
from faithaudit.audits.report.labels import label_source

RULES = LabelThresholds()


def labels(rows, floor, ratios, flips, rules=RULES) -> list[str | None]:
    return [
        label_source(
            reliance=float(rows[0, i]),
            interval=interval,
            floor=floor,
            attention_ratio=float(ratios[i]),
            positional=True,
            flip_counted=bool(flips[i]),
            rules=rules,
        ).label
        for i, interval in enumerate(order_intervals(rows, floor))
    ]


def assert_skipping_keeps_labels(rows, floor, ratios, flips, rules=RULES) -> np.ndarray:
    """Labels with the sources ``order_sensitive`` leaves out blanked in the other orders equal those with every
    source re-scored; the sensitive mask."""
    sensitive = order_sensitive(rows[0], floor, distracting=rules.distracting)
    partial = rows.copy()
    partial[1:, ~sensitive] = np.nan
    assert labels(partial, floor, ratios, flips, rules) == labels(rows, floor, ratios, flips, rules)
    return sensitive


def test_skipping_the_sources_no_order_can_move_keeps_every_label():
    rng = np.random.default_rng(0)
    skipped = 0
    for _ in range(3000):
        n, m = int(rng.integers(2, 9)), int(rng.integers(2, 5))
        floor = float(rng.choice([0.0, rng.uniform(0.1, 2.5)]))
        rows = rng.normal(0, 1.5, size=(1, n)) + rng.normal(0, 0.8, size=(m, n))  # a source's orders share an effect
        ratios, flips = rng.uniform(0, 3, size=n), rng.random(n) < 0.3
        sensitive = assert_skipping_keeps_labels(rows, floor, ratios, flips)
        skipped += int((~sensitive).sum())
    assert skipped > 3000  # the band is not empty: the test compares something


def test_on_the_bounds_and_with_unusual_thresholds_too():
    rng = np.random.default_rng(1)
    for _ in range(3000):
        t = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0, 1.25], size=3)
        rules = LabelThresholds(decisive=t[0], supporting=t[1], distracting=t[2])
        floor = float(rng.choice([0.0, 0.5, 1.0]))
        bounds = np.array([floor, -floor, *t, 0.0])
        n, m = int(rng.integers(2, 7)), int(rng.integers(2, 4))
        rows = rng.choice(np.concatenate([bounds, bounds + 0.5, bounds - 0.5]), size=(m, n))  # values on the bounds
        ratios, flips = rng.choice([0.0, 0.5, 1.5, 3.0], size=n), rng.random(n) < 0.5
        assert_skipping_keeps_labels(rows, floor, ratios, flips, rules)


def test_the_band_bounds_an_unscored_source_gets_reliance_plus_minus_the_floor():
    reliance = np.array([0.79, 0.8, -0.8, 0.9, -1.0, 0.0, -0.79])
    sensitive = order_sensitive(reliance, 0.8, distracting=-0.5)
    assert sensitive.tolist() == [False, True, True, True, True, False, False]  # the floor and min(-0.5, -0.8)
    # without placebos (floor 0) every positive reliance could be decisive by a counted flip
    assert order_sensitive(reliance, 0.0, distracting=-0.5).tolist() == [True, True, True, True, True, True, True]
    rows = np.vstack([reliance, np.where(sensitive, reliance + 0.3, np.nan)])
    intervals = order_intervals(rows, 0.8)
    assert intervals[0] == (0.79 - 0.8, 0.79 + 0.8) and intervals[3] == (0.9, 1.2)


def test_top1_stability_among_the_rescored_sources():
    rows = np.array([[5.0, 0.1, 1.0], [0.2, np.nan, 3.0], [4.0, np.nan, 1.0]])
    assert top1_stability(rows) == 2 / 3  # the unscored source cannot take the top
    assert top1_stability(np.array([[0.1, 0.2], [np.nan, np.nan]])) is None  # the given top-1 was not re-scored
    assert top1_stability(np.array([[1.0, 2.0], [3.0, 2.5]])) == 0.5
