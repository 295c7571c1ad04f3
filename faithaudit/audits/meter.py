"""What an audit costs and how far it is: forward passes, tokens and seconds per stage; progress in passes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from faithaudit.api_schemas import Cost, MethodCost
from faithaudit.audits.model.adapter import ModelAdapter

Progress = Callable[[float, str], None]  # progress(fraction done, stage name)


@dataclass
class Meter:
    """Forward passes, tokens and seconds per stage, read off the adapter's counter."""

    model: ModelAdapter
    stages: dict[str, MethodCost] = field(default_factory=dict)

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        passes0, tokens0 = self.model.counter.snapshot()
        try:
            yield
        finally:
            passes, tokens = self.model.counter.snapshot()
            spent = MethodCost(
                forward_passes=passes - passes0, tokens_processed=tokens - tokens0, seconds=time.perf_counter() - t0
            )
            self.stages[stage] = add_cost(self.stages.get(stage, MethodCost()), spent)

    def cost(self) -> Cost:
        return cost_of(self.stages)


def add_cost(a: MethodCost, b: MethodCost) -> MethodCost:
    return MethodCost(
        forward_passes=a.forward_passes + b.forward_passes,
        tokens_processed=a.tokens_processed + b.tokens_processed,
        seconds=a.seconds + b.seconds,
    )


def cost_of(stages: dict[str, MethodCost], *, workers: int = 1) -> Cost:
    """The report's cost of these stages: totals, and each stage with its seconds rounded."""
    return Cost(
        forward_passes=sum(s.forward_passes for s in stages.values()),
        tokens_processed=sum(s.tokens_processed for s in stages.values()),
        seconds=round(sum(s.seconds for s in stages.values()), 3),
        by_stage={k: v.model_copy(update={"seconds": round(v.seconds, 3)}) for k, v in stages.items()},
        workers=workers,
    )


@dataclass
class ProgressTracker:
    """Counts planned passes done and reports the fraction to an optional callback."""

    total: int
    callback: Progress | None
    done: int = 0

    def step(self, stage: str, units: int = 1) -> None:
        self.done += units
        if self.callback is not None:
            self.callback(min(self.done / max(self.total, 1), 1.0), stage)

    def finish(self) -> None:
        """The report is assembled: 1.0, whatever the plan's estimate of the passes (flips skip some sources)."""
        if self.callback is not None:
            self.callback(1.0, "report")

    def ticker(self, stage: str) -> Callable[[], None]:
        """A no-argument callback that steps ``stage`` once (the scorers' ``on_each``)."""
        return lambda: self.step(stage)
