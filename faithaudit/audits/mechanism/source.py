"""One traced source in an audit: the fed suffix, its corruption and the prefix cache, from the audit's layout and
full-context pass; then ``trace.trace_source``."""

from __future__ import annotations

from collections.abc import Callable

from faithaudit.audits.context import Findings, StageContext
from faithaudit.audits.mechanism.architectures import arch_for
from faithaudit.audits.mechanism.patching import Patcher, embedding_noise
from faithaudit.audits.mechanism.trace import Inputs, trace_source
from faithaudit.audits.placebos import neutral_token_fill
from faithaudit.errors import FaithauditError

CORRUPTION_SEED_OFFSET = 4_000_037  # corruptions use seed + this (+ the source's index)


def trace_in_context(
    ctx: StageContext,
    found: Findings,
    index: int,
    *,
    on_pass: Callable[[], None] | None = None,
    seed: int | None = None,
    span_only: bool = False,
):
    """Trace source ``index``; ``seed`` overrides the corruption's seed (a second look), ``span_only`` stops after
    the span trace."""
    from faithaudit.audits.stages.mechanism import MechanismFinding

    module = getattr(ctx.model, "torch_module", None)
    if module is None:
        raise FaithauditError(f"the mechanism method needs a Hugging Face model; {ctx.model.name} has no torch module")
    spec = arch_for(ctx.model.shape.model_type)
    options = ctx.options
    seed = options.seed + CORRUPTION_SEED_OFFSET + index if seed is None else seed
    inputs = _inputs(ctx, index, seed)
    patcher = Patcher(
        module,
        spec,
        [(k[:, :, : inputs.prefix_len], v[:, :, : inputs.prefix_len]) for k, v in ctx.base.cache.kv],
        response_len=len(ctx.response_ids),
        on_pass=on_pass,
    )
    if options.mechanism_corruption == "noise":
        patcher.noise = (slice(0, inputs.source_len), embedding_noise(module, spec, inputs.source_len, seed=seed))
    trace = trace_source(
        patcher,
        inputs,
        head_layers=options.mechanism_head_layers,
        noise_floor=found.placebos.noise.floor if found.placebos is not None else None,
        loo=float(found.loo_logprobs[index]) if found.loo_logprobs is not None else None,
        span_only=span_only,
    )
    return MechanismFinding(
        source=index, corruption=options.mechanism_corruption, seed=seed, trace=trace, forward_passes=0
    )


def _inputs(ctx: StageContext, index: int, seed: int) -> Inputs:
    start, end = ctx.base.prompt.spans[index]
    full = tuple(ctx.base.prompt.ids) + tuple(ctx.response_ids)
    clean = full[start:]
    corrupted = clean
    if ctx.options.mechanism_corruption == "token_swap":
        (fill,) = neutral_token_fill(ctx.request.query, [end - start], seed=seed, encode=ctx.model.encode)
        corrupted = tuple(fill) + clean[end - start :]
    without = tuple(ctx.layout.without(index).ids) + tuple(ctx.response_ids)
    shared = min(start, next((k for k, (a, b) in enumerate(zip(without, full, strict=False)) if a != b), start))
    return Inputs(
        clean_ids=clean,
        corrupted_ids=corrupted,
        source_len=end - start,
        prefix_len=start,
        loo_ids=without[shared:],
        loo_prefix_len=shared,
    )
