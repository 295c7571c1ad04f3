"""What tracing one source costs, and the checks a mechanism request passes before any forward pass. Torch-free:
the API runs the same checks at submit when the model's files are cached (``service.token_budget``).

Passes per traced source, for a model of L layers, H heads and E experts:
    clean (recording) 1 + corrupted 1 + unchanged-run self-check 1 + span trace L + mediation 4L
    + all-attention-after self-check 1 + heads 2 H x mechanism_head_layers + leave-one-out 1 (when not measured)
    + routers (MoE only): 1 pass without the source + E x ROUTER_ABLATION_LAYERS expert ablations
"""

from __future__ import annotations

from dataclasses import dataclass

from faithaudit.api_schemas import AuditRequest
from faithaudit.errors import InvalidRequestError

ROUTER_ABLATION_LAYERS = 2  # layers whose routing changes most get per-expert ablations


@dataclass(frozen=True)
class ModelShape:
    model_type: str
    num_layers: int
    num_heads: int
    num_experts: int = 0  # 0: dense
    sliding_window: int | None = None  # some layers attend to the last W tokens only (Gemma 2/3, Mistral v0.1)

    @classmethod
    def of_config(cls, config) -> ModelShape:
        """From a transformers config object or its ``config.json`` as a dict."""
        get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
        experts = get("num_local_experts") or get("num_experts") or 0
        layer_types = get("layer_types") or []
        window = get("sliding_window")
        sliding = "sliding_attention" in layer_types if layer_types else get("use_sliding_window") is not False
        return cls(
            model_type=str(get("model_type", "")),
            num_layers=int(get("num_hidden_layers", 0)),
            num_heads=int(get("num_attention_heads", 0)),
            num_experts=int(experts),
            sliding_window=int(window) if window and sliding else None,
        )


def passes_per_source(shape: ModelShape, head_layers: int, *, loo_measured: bool) -> int:
    layers = shape.num_layers
    passes = 3 + 5 * layers + 1 + 2 * shape.num_heads * min(head_layers, layers) + (0 if loo_measured else 1)
    if shape.num_experts:
        passes += 1 + shape.num_experts * min(ROUTER_ABLATION_LAYERS, layers)
    return passes


def check_mechanism(
    request: AuditRequest, source_ids: list[str], shape: ModelShape | None, *, sequence_tokens: int | None = None
) -> None:
    """Field errors for a mechanism request that cannot run: unknown source ids, more sources asked for than there
    are, head layers over the model's layer count, an architecture without hooks, a pass budget one traced source
    exceeds, or a prompt + response past a sliding attention window (``sequence_tokens``). ``shape`` None (the
    API before any worker cached the model): the model-dependent checks wait for the worker."""
    options = request.audit
    if "mechanism" not in options.methods:
        return
    if not options.mechanism_sources and options.mechanism_top_k > len(source_ids):
        raise InvalidRequestError.for_field(
            "audit.mechanism_top_k", f"this request has {len(source_ids)} sources; at most that many"
        )
    for k, source in enumerate(options.mechanism_sources):
        if source not in source_ids:
            raise InvalidRequestError.for_field(
                f"audit.mechanism_sources[{k}]", f"no source {source!r} in this request; its sources: {source_ids}"
            )
    if shape is None:
        return
    from faithaudit.audits.mechanism.architectures import arch_for

    arch_for(shape.model_type)
    if options.mechanism_head_layers > shape.num_layers:
        raise InvalidRequestError.for_field(
            "audit.mechanism_head_layers", f"the model has {shape.num_layers} layers; at most that many"
        )
    window = shape.sliding_window
    if window is not None and sequence_tokens is not None and sequence_tokens >= window:
        raise InvalidRequestError.for_field(
            "audit.methods",
            f"mechanism on this model needs prompt + response under its sliding attention window ({window} tokens); "
            f"this one is {sequence_tokens}",
        )
    needed = passes_per_source(shape, options.mechanism_head_layers, loo_measured=False)
    if needed > options.mechanism_max_passes:
        raise InvalidRequestError.for_field(
            "audit.mechanism_max_passes",
            f"tracing one source on this model ({shape.num_layers} layers, {shape.num_heads} heads"
            f"{f', {shape.num_experts} experts' if shape.num_experts else ''}) takes {needed} passes, over the "
            f"budget of {options.mechanism_max_passes}; raise it or lower audit.mechanism_head_layers",
        )
