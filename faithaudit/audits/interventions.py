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


def exhaustive_masks(num_sources: int) -> np.ndarray:
    """[2^n, n]: every keep-mask, row k keeping source i when bit i of k is set."""
    rows = np.arange(2**num_sources)[:, None]
    return (rows >> np.arange(num_sources)[None, :]) & 1 == 1


def distinct_keep_masks(
    num_sources: int, count: int, *, keep_probability: float, seed: int, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Up to ``count`` distinct Bernoulli(keep_probability) masks, none in ``exclude``, in the order one seeded
    stream draws them (so the first k are those a draw of k would give). Fewer when fewer remain possible."""
    rng = np.random.default_rng(seed)
    seen = {m.tobytes() for m in np.asarray(exclude, dtype=bool)} if exclude is not None else set()
    if count >= 2**num_sources - len(seen):  # every remaining mask, in a seeded order
        rest = np.array([m for m in exhaustive_masks(num_sources) if m.tobytes() not in seen], dtype=bool)
        return rest[rng.permutation(len(rest))].reshape(len(rest), num_sources)
    out: list[np.ndarray] = []
    while len(out) < count:
        for mask in rng.random((max(count, 16), num_sources)) < keep_probability:
            if mask.tobytes() not in seen and len(out) < count:
                seen.add(mask.tobytes())
                out.append(mask)
    return np.array(out, dtype=bool).reshape(len(out), num_sources)


def held_out_count(num_ablations: int) -> int:
    """How many extra masks evaluate the surrogate: max(16, num_ablations / 4)."""
    return max(16, num_ablations // 4)


HELD_OUT_SEED_OFFSET = 1_000_003  # held-out masks use seed + this, never the fitting seed
