"""Which contexts to score: keep-masks over sources (True = the source stays in the prompt).

Every intervention on a RAG prompt is a keep-mask; the scorer turns a mask into tokens through the prompt layout.
"""

from __future__ import annotations

import numpy as np


def leave_one_out_masks(num_sources: int) -> np.ndarray:
    """[n, n]: row i removes source i only."""
    return ~np.eye(num_sources, dtype=bool)


def no_context_mask(num_sources: int) -> np.ndarray:
    """[1, n]: every source removed (the system turn, the template and the query stay)."""
    return np.zeros((1, num_sources), dtype=bool)


def random_keep_masks(num_sources: int, count: int, *, keep_probability: float, seed: int) -> np.ndarray:
    """[count, n] independent Bernoulli(keep_probability) masks from a seeded generator (ContextCite's design)."""
    rng = np.random.default_rng(seed)
    return rng.random((count, num_sources)) < keep_probability


def held_out_count(num_ablations: int) -> int:
    """How many extra masks evaluate the surrogate: max(16, num_ablations / 4)."""
    return max(16, num_ablations // 4)


HELD_OUT_SEED_OFFSET = 1_000_003  # held-out masks use seed + this, never the fitting seed
