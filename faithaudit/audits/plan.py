"""The plan of one audit: which stages run, in which order, and how many passes each costs.

Every method is a named stage in an explicit registry, in the style of inseq's step functions:
``register_stage(name, passes=..., order=...)`` decorates ``fn(ctx: StageContext, found: Findings) -> Findings``;
``list_stages()`` names them all, ``list_methods()`` those a request selects through ``audit.methods``
(the names ``api_schemas.request.Method`` declares for the API, which cannot import this registry: a test keeps the
two equal). A stage reads the shared context and returns its findings as data; it knows nothing of prose, HTML
or HTTP. ``AuditPlan.build(options, n)`` picks the stages a request asks for, once, before any pass.

A stage declares the earlier stages whose findings it reads (``reads``); ``AuditPlan.units`` groups the planned
stages by those declarations into units that may run on different workers (``audits.shards``); a stage that reads
several units' findings is ``shardable=False`` and runs once they are merged (``AuditPlan.assembled``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from faithaudit.api_schemas import AuditOptions
from faithaudit.errors import FaithauditError

StageFn = Callable[..., object]  # (ctx: StageContext, found: Findings) -> Findings
PassCount = Callable[[AuditOptions, int], int]  # (options, number of sources) -> planned passes


class UnknownStageError(FaithauditError):
    """A stage name that is not registered; the message lists the valid ones."""


@dataclass(frozen=True)
class Stage:
    name: str
    run: StageFn
    passes: PassCount  # progress units; each is one forward pass or one regeneration
    order: int  # stages run in ascending order whatever the request's order of methods
    selects: Callable[[AuditOptions], bool]  # does this request run the stage?
    is_method: bool  # selected by name in ``audit.methods``
    needs_attention: bool = False  # the full-context pass must read attention
    needs_any: tuple[str, ...] = ()  # runs only when one of these stages is planned too
    needs_reordering: bool = False  # runs only when the sources' order can change (documents, not a trace)
    metered: bool = True  # has its own entry in ``report.cost.by_stage``
    reads: tuple[str, ...] = ()  # earlier stages whose findings it reads (a shard runs them together)
    shardable: bool = True  # may run on another worker (``audits.shards``); False: when the audit is assembled


_STAGES: dict[str, Stage] = {}


def register_stage(
    name: str,
    *,
    passes: PassCount,
    order: int,
    selects: Callable[[AuditOptions], bool] | None = None,
    needs_attention: bool = False,
    needs_any: tuple[str, ...] = (),
    needs_reordering: bool = False,
    metered: bool = True,
    reads: tuple[str, ...] = (),
    shardable: bool = True,
) -> Callable[[StageFn], StageFn]:
    """Register ``fn`` as the stage ``name``. By default a request selects it by listing ``name`` in
    ``audit.methods``; ``selects`` replaces that rule (answer flips are selected by ``answer_flip_top_k``)."""

    def decorate(fn: StageFn) -> StageFn:
        if name in _STAGES and _STAGES[name].run is not fn:
            raise ValueError(f"stage {name!r} is already registered")
        _STAGES[name] = Stage(
            name=name,
            run=fn,
            passes=passes,
            order=order,
            selects=selects or (lambda options: name in options.methods),
            is_method=selects is None,
            needs_attention=needs_attention,
            needs_any=needs_any,
            needs_reordering=needs_reordering,
            metered=metered,
            reads=reads,
            shardable=shardable,
        )
        return fn

    return decorate


def _registry() -> dict[str, Stage]:
    import faithaudit.audits.stages  # noqa: F401 - registers the built-in stages

    return _STAGES


def list_stages() -> list[str]:
    """Every registered stage, in the order an audit runs them."""
    return [s.name for s in sorted(_registry().values(), key=lambda s: s.order)]


def list_methods() -> list[str]:
    """The stages a request selects by name in ``audit.methods``."""
    return [name for name in list_stages() if _registry()[name].is_method]


def get_stage(name: str) -> Stage:
    try:
        return _registry()[name]
    except KeyError:
        raise UnknownStageError(f"unknown stage {name!r}; valid stages: {', '.join(list_stages())}") from None


@dataclass(frozen=True)
class AuditPlan:
    stages: tuple[Stage, ...]
    passes: dict[str, int]  # planned progress units per stage
    with_attention: bool  # read attention in the full-context pass

    @property
    def units(self) -> tuple[tuple[str, ...], ...]:
        """The shardable stages in groups that can run apart: a stage joins the group of every planned stage it
        reads (``Stage.reads``). Groups keep the plan's order, and so does each group's list of stages."""
        names = [s.name for s in self.stages if s.shardable]
        group = {name: i for i, name in enumerate(names)}
        for stage in self.stages:
            for read in stage.reads if stage.shardable else ():
                if read in group:
                    old, new = group[stage.name], group[read]
                    group = {k: new if g == old else g for k, g in group.items()}
        order = list(dict.fromkeys(group[name] for name in names))
        return tuple(tuple(n for n in names if group[n] == g) for g in order)

    @property
    def assembled(self) -> tuple[Stage, ...]:
        """The stages that run once every shard is in (they read findings from several units)."""
        return tuple(s for s in self.stages if not s.shardable)

    @property
    def total_passes(self) -> int:
        """The progress total: the full-context pass plus every stage's passes."""
        return 1 + sum(self.passes.values())

    @classmethod
    def build(cls, options: AuditOptions, num_sources: int, *, reorderable: bool = True) -> AuditPlan:
        """``reorderable``: the sources can be shown in another order (two or more documents; not a trace)."""
        for name in options.methods:
            get_stage(name)  # the schema already refuses unknown names; a stale registry is a bug, said clearly
        chosen = [
            s
            for s in sorted(_registry().values(), key=lambda s: s.order)
            if s.selects(options) and (reorderable or not s.needs_reordering)
        ]
        names = {s.name for s in chosen}
        chosen = [s for s in chosen if not s.needs_any or names & set(s.needs_any)]
        return cls(
            stages=tuple(chosen),
            passes={s.name: s.passes(options, num_sources) for s in chosen},
            with_attention=any(s.needs_attention for s in chosen),
        )
