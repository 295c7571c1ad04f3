"""Record and restore activations of a Hugging Face causal LM with forward hooks, by ``ArchSpec`` names.

A ``Patcher`` scores one fixed response after one prompt whose first ``prefix_len`` tokens are cached (the
context before the traced source, sliced from the audit's full-context cache): every pass feeds only the suffix
(the source, what follows it, the response). Positions below are indices into that fed suffix.

Sites, per layer ``L``:
    residual   the hidden state entering layer L (L = 0: the embeddings)       pre-hook on the layer
    attention  the attention block's output                                    hook on ``attention``
    mlp        the MLP (or MoE block) output                                   hook on ``mlp``
    head       one head's slice of the attention output projection's input     pre-hook on ``attention_out``
    expert     one expert's routing weight at some positions, set to 0         hook on ``router``
An ``Edit`` replaces a site's value at ``positions`` with recorded clean values, or with zeros (``values=None``).
A recording pass stores every site at every fed position, the routers' logits and choices, and (through the
attention probe) each head's attention to the source.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from faithaudit.audits.mechanism.architectures import ArchSpec
from faithaudit.audits.model.cache_names import cache_kwargs

Site = Literal["residual", "attention", "mlp", "head", "expert"]


@dataclass(frozen=True)
class Edit:
    site: Site
    layer: int
    positions: slice | torch.Tensor  # fed positions
    values: torch.Tensor | None = None  # [len(positions), width] replacement; None: zeros
    index: int | None = None  # the head, or the expert


@dataclass
class Recording:
    """A clean pass's activations at every fed position ([T, width] per layer), routers and per-head attention."""

    residual: dict[int, torch.Tensor] = field(default_factory=dict)
    attention: dict[int, torch.Tensor] = field(default_factory=dict)
    mlp: dict[int, torch.Tensor] = field(default_factory=dict)
    head: dict[int, torch.Tensor] = field(default_factory=dict)  # the attention output projection's input
    router_logits: dict[int, torch.Tensor] = field(default_factory=dict)  # [T, experts]
    router_choice: dict[int, torch.Tensor] = field(default_factory=dict)  # [T, top_k]

    def site(self, site: Site) -> dict[int, torch.Tensor]:
        return getattr(self, site)


@dataclass
class Patcher:
    model: torch.nn.Module
    spec: ArchSpec
    prefix_kv: Sequence[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values) [1, kv_heads, P, head_dim]
    response_len: int
    on_pass: Callable[[], None] | None = None
    noise: tuple[slice, torch.Tensor] | None = None  # (positions, added to the embeddings there) on corrupted runs

    def __post_init__(self) -> None:
        self.layers = self.model.get_submodule(self.spec.layers)
        self.num_layers = len(self.layers)
        cfg = self.model.config
        self.num_heads = int(cfg.num_attention_heads)
        out_proj = self.layers[0].get_submodule(self.spec.attention_out)
        self.head_dim = int(out_proj.in_features) // self.num_heads
        self.has_router = any(self.router(k) is not None for k in range(self.num_layers))

    @property
    def prefix_len(self) -> int:
        return int(self.prefix_kv[0][0].shape[2]) if self.prefix_kv else 0

    # -- one pass -----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def run(
        self,
        suffix_ids: Sequence[int],
        edits: Sequence[Edit] = (),
        *,
        record: Recording | None = None,
        corrupted: bool = False,
        probe=None,
        prefix_len: int | None = None,
    ) -> float:
        """log p(response) in nats (float64 after the LM head) with ``edits`` applied; optionally record.
        ``prefix_len``: reuse only this much of the cached prefix (a suffix that differs earlier, e.g. without the
        source where tokenization at its edge changed)."""
        from transformers import DynamicCache

        from faithaudit.audits.provenance import probing

        keep = self.prefix_len if prefix_len is None else prefix_len
        cache = DynamicCache(config=self.model.config)
        if self.prefix_kv and keep > 0:
            kv = [(k[:, :, :keep], v[:, :, :keep]) for k, v in self.prefix_kv]
            cache = DynamicCache(ddp_cache_data=kv, config=self.model.config)
        ids = torch.tensor([list(suffix_ids)], dtype=torch.long)
        with ExitStack() as stack:
            self._hooks(stack, edits, record, corrupted)  # each handle is removed on exit, even mid-registration
            if probe is not None:
                stack.enter_context(probing(probe))
            out = self.model(
                input_ids=ids, **cache_kwargs(self.model, cache), use_cache=True, logits_to_keep=self.response_len + 1
            )
        if self.on_pass is not None:
            self.on_pass()
        logits = out.logits[0, :-1].double()  # [response_len, vocab]
        targets = torch.tensor(list(suffix_ids[-self.response_len :]), dtype=torch.long)
        return float(torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).sum())

    # -- hooks --------------------------------------------------------------------------------------------
    def _hooks(self, stack: ExitStack, edits: Sequence[Edit], record: Recording | None, corrupted: bool) -> None:
        def add(handle) -> None:
            stack.callback(handle.remove)

        if corrupted and self.noise is not None:
            add(self.model.get_submodule(self.spec.embed).register_forward_hook(self._add_noise))
        by_site: dict[tuple[Site, int], list[Edit]] = {}
        for edit in edits:
            by_site.setdefault((edit.site, edit.layer), []).append(edit)
        for layer in range(self.num_layers):
            block = self.layers[layer]
            sites = {s: by_site.get((s, layer), []) for s in ("residual", "attention", "mlp", "head", "expert")}
            if sites["residual"] or record is not None:
                hook = _residual_hook(sites["residual"], record, layer)
                add(block.register_forward_pre_hook(hook, with_kwargs=True))
            for site, name in (("attention", self.spec.attention), ("mlp", self.spec.mlp)):
                if sites[site] or record is not None:
                    hook = _output_hook(sites[site], record.site(site) if record else None, layer)
                    add(block.get_submodule(name).register_forward_hook(hook))
            if sites["head"] or record is not None:
                hook = _head_hook(sites["head"], record, layer, self.head_dim)
                add(block.get_submodule(self.spec.attention_out).register_forward_pre_hook(hook))
            router = self.router(layer)
            if router is not None and (sites["expert"] or record is not None):
                add(router.register_forward_hook(_router_hook(sites["expert"], record, layer)))

    def router(self, layer: int):
        """The layer's MoE gate, or None (a dense model, or a dense layer of a MoE model such as Qwen2-MoE's
        ``mlp_only_layers``)."""
        if self.spec.router is None:
            return None
        try:
            return self.layers[layer].get_submodule(self.spec.router)
        except AttributeError:
            return None

    def _add_noise(self, module, args, output):
        positions, delta = self.noise
        output = output.clone()
        output[0, positions] += delta.to(output.dtype)
        return output


def _apply(tensor: torch.Tensor, edits: Sequence[Edit], *, width: slice | None = None) -> torch.Tensor:
    """``tensor`` [1, T, D] with each edit's positions replaced (the columns ``width`` only, for a head)."""
    if not edits:
        return tensor
    tensor = tensor.clone()
    for edit in edits:
        cols = width if width is not None else slice(None)
        if width is None and edit.index is not None:
            raise ValueError("an edit with an index needs a head or expert site")
        if edit.values is None:
            tensor[0, edit.positions, cols] = 0
        else:
            tensor[0, edit.positions, cols] = edit.values.to(tensor.dtype)
    return tensor


def _residual_hook(edits: Sequence[Edit], record: Recording | None, layer: int):
    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        if record is not None:
            record.residual[layer] = hidden[0].detach().clone()
        hidden = _apply(hidden, edits)
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}

    return hook


def _output_hook(edits: Sequence[Edit], store: dict[int, torch.Tensor] | None, layer: int):
    def hook(module, args, output):
        first = output[0] if isinstance(output, tuple) else output
        if store is not None:
            store[layer] = first[0].detach().clone()
        first = _apply(first, edits)
        return (first, *output[1:]) if isinstance(output, tuple) else first

    return hook


def _head_hook(edits: Sequence[Edit], record: Recording | None, layer: int, head_dim: int):
    def hook(module, args):
        x = args[0]
        if record is not None:
            record.head[layer] = x[0].detach().clone()
        for edit in edits:
            cols = slice(edit.index * head_dim, (edit.index + 1) * head_dim)
            x = _apply(x, [Edit(edit.site, edit.layer, edit.positions, edit.values)], width=cols)
        return (x, *args[1:])

    return hook


def _router_hook(edits: Sequence[Edit], record: Recording | None, layer: int):
    """The gate returns (router_logits [T, E], top_k_weights [T, k], top_k_index [T, k]) for one sequence."""

    def hook(module, args, output):
        logits, weights, index = output[0], output[1], output[2]
        if record is not None:
            record.router_logits[layer] = logits.detach().float().clone()
            record.router_choice[layer] = index.detach().clone()
        if not edits:
            return output
        weights = weights.clone()
        for edit in edits:
            rows = torch.zeros(weights.shape[0], dtype=torch.bool, device=weights.device)
            rows[edit.positions] = True
            weights[rows[:, None] & (index == edit.index)] = 0  # the expert's output, zeroed at those tokens
        return (logits, weights, index, *output[3:])

    return hook


def embedding_noise(model: torch.nn.Module, spec: ArchSpec, length: int, *, seed: int, scale: float = 3.0):
    """Gaussian noise of ``scale`` embedding SDs for ``length`` positions, seeded (causal tracing's corruption)."""
    embed = model.get_submodule(spec.embed)
    gen = torch.Generator().manual_seed(int(seed))
    sample = torch.randint(0, embed.weight.shape[0], (4096,), generator=gen)
    with torch.inference_mode():  # the module's output: Gemma scales its embeddings by sqrt(hidden) inside it
        sd = float(embed(sample.to(embed.weight.device)).float().std())
    return torch.randn(length, embed.weight.shape[1], generator=gen) * (scale * sd)


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().double().cpu().numpy()


@torch.inference_mode()
def prefix_cache(model: torch.nn.Module, prefix_ids: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Keys and values of ``prefix_ids`` (one pass): for a model used without the audit's adapter (tests, tiny
    models). An audit slices its full-context cache instead."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    ids = torch.tensor([list(prefix_ids)], dtype=torch.long)
    model(input_ids=ids, **cache_kwargs(model, cache), use_cache=True, logits_to_keep=1)
    return [(layer.keys, layer.values) for layer in cache.layers]
