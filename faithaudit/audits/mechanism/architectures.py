"""Where each architecture keeps the modules a mechanism audit hooks, by ``config.model_type``.

Names are relative: ``layers`` from the causal LM, the others from one decoder layer. Hooks use only these, never
an assumed Llama name. An architecture missing here is refused before any pass (``UnsupportedArchitectureError``),
naming it; add a row (and a tiny-model test in ``tests/test_mechanism_architectures.py``) to support one.

``attention_out`` is the attention's output projection: its *input* holds the heads side by side
(``[..., heads * head_dim]``), which is where one head is patched or zeroed. ``router`` is the mixture-of-experts
gate: in transformers 5 it returns ``(router_logits, top_k_weights, top_k_index)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from faithaudit.errors import InvalidRequestError


@dataclass(frozen=True)
class ArchSpec:
    layers: str = "model.layers"
    embed: str = "model.embed_tokens"
    attention: str = "self_attn"
    attention_out: str = "self_attn.o_proj"
    mlp: str = "mlp"
    router: str | None = None  # the MoE gate within a layer; None for dense models


_DENSE = ArchSpec()
_MOE = ArchSpec(router="mlp.gate")

ARCHITECTURES: dict[str, ArchSpec] = {
    "llama": _DENSE,  # SmolLM2, Llama 2/3
    "mistral": _DENSE,
    "qwen2": _DENSE,
    "qwen3": _DENSE,
    "gemma": _DENSE,
    "gemma2": _DENSE,  # post-attention norm sits outside ``self_attn``: restoring its output still restores all
    "gemma3_text": _DENSE,
    "mixtral": _MOE,
    "qwen2_moe": _MOE,  # its shared expert runs on every token and is not routed
    "qwen3_moe": _MOE,
    "olmoe": _MOE,
}


class UnsupportedArchitectureError(InvalidRequestError):
    """The model's architecture has no row in ``ARCHITECTURES``: refused before any pass."""


def arch_for(model_type: str) -> ArchSpec:
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        raise UnsupportedArchitectureError.for_field(
            "audit.methods",
            f"the mechanism method does not know the architecture {model_type!r} of this model; supported: "
            f"{', '.join(sorted(ARCHITECTURES))}",
        ) from None
