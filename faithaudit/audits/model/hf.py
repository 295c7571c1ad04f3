"""``HFModelAdapter``: the ``ModelAdapter`` protocol (``audits.model.adapter``) for any Hugging Face causal LM.

Loading by name and caching live in ``audits.model.registry``; device, dtype and batch size in
``audits.model.device``. Scores are float64 log-softmax over float32 logits of the response positions; a reused
``CachedContext`` holds the per-layer keys and values of a scored sequence. ``score_batch`` scores several
contexts that share a cached prefix in one forward call: the prefix KV expanded over the batch, the suffixes
right-padded (a causal row never attends to the padding after it, so positions and results are the unpadded ones).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from faithaudit.audits.model.adapter import (
    CachedContext,
    ChatPromptMixin,
    ForwardCounter,
    ResponseScore,
    row_budgets,
)
from faithaudit.audits.model.cache_names import cache_kwargs, check_cache_argument, returned_cache
from faithaudit.audits.model.chat import plain_chat
from faithaudit.audits.model.device import Compute, auto_rows, input_device, row_bytes, row_flop
from faithaudit.audits.model.split_attention import split_prefix_attention
from faithaudit.audits.provenance import AttentionProbe, probing, register_probe_attention


@dataclass
class HFModelAdapter(ChatPromptMixin):
    """A Hugging Face causal LM and its tokenizer, already loaded. Use ``from_pretrained`` to load one."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    revision: str
    counter: ForwardCounter = field(default_factory=ForwardCounter)
    split_attention: bool = True  # cached passes: prefix + causal-suffix attention merged exactly (CPU)
    compute: Compute = field(default_factory=Compute)

    def __post_init__(self) -> None:
        self.model.eval()
        check_cache_argument(self.model)
        cfg = self.model.config
        self.device = input_device(self.model)
        self.context_window = int(getattr(cfg, "max_position_embeddings", 2048))
        self.num_layers = int(cfg.num_hidden_layers)
        self.num_heads = int(getattr(cfg, "num_attention_heads", 0))
        self.dtype_name = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        self.num_parameters = sum(p.numel() for p in self.model.parameters())
        self.model.register_forward_pre_hook(self._count, with_kwargs=True)
        stop = {self.tokenizer.eos_token_id}
        for tok in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
            tid = self.tokenizer.convert_tokens_to_ids(tok)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id and tid >= 0:
                stop.add(tid)
        self._stop_ids = sorted(t for t in stop if t is not None)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        name: str | None = None,
        revision: str = "local",
        threads: int | None = None,
        compute: Compute | None = None,
    ) -> HFModelAdapter:
        """Load from a local folder in Hugging Face format onto ``compute``'s device and dtype. Never reaches a hub."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from faithaudit.audits.model.device import check_device, load_kwargs, place, upcast_lm_head

        compute = compute or Compute()
        check_device(compute)
        if threads:
            torch.set_num_threads(threads)
        attn = register_probe_attention()
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            str(path), local_files_only=True, attn_implementation=attn, **load_kwargs(compute)
        )
        model = place(model, compute)
        upcast_lm_head(model)
        return cls(model=model, tokenizer=tokenizer, name=name or str(path), revision=revision, compute=compute)

    @property
    def attention_implementation(self) -> str:
        """The attention kernel behind the probe wrapper: SDPA (exact prefix split on CPU), or the model's eager
        kernel where it soft-caps attention logits (Gemma 2)."""
        cfg = self.model.config
        if getattr(cfg, "attn_logit_softcapping", None):
            return "eager (soft-capped)"
        return "sdpa, prefix-split on cpu" if self.device.type == "cpu" and self.split_attention else "sdpa"

    def batch_size_for(self, tokens: int, scored: int) -> int:
        """Rows per forward call for rows of about ``tokens`` tokens with ``scored`` scored positions each."""
        if isinstance(self.compute.batch_size, int):
            return self.compute.batch_size
        total = None
        if self.device.type == "cuda":
            total = torch.cuda.get_device_properties(self.device).total_memory
        cfg = self.model.config
        heads = int(getattr(cfg, "num_key_value_heads", None) or self.num_heads or 1)
        hidden = int(getattr(cfg, "hidden_size", 0) or 0)
        head_dim = int(getattr(cfg, "head_dim", None) or hidden // max(self.num_heads, 1))
        itemsize = next(self.model.parameters()).element_size()
        need = row_bytes(
            layers=self.num_layers,
            kv_width=heads * head_dim,
            hidden=hidden,
            vocab=int(cfg.vocab_size),
            tokens=tokens,
            scored=scored,
            itemsize=itemsize,
        )
        return auto_rows(
            self.device.type,
            total_memory=total,
            bytes_per_row=need,
            flop_per_row=row_flop(parameters=self.num_parameters, tokens=tokens),
            dtype=self.dtype_name,
        )

    @property
    def torch_module(self) -> torch.nn.Module:
        """The loaded network, for stages that hook it (``audits.mechanism``)."""
        return self.model

    @property
    def shape(self):
        """Architecture, layers, heads and experts (``audits.mechanism.budget.ModelShape``)."""
        from faithaudit.audits.mechanism.budget import ModelShape

        return ModelShape.of_config(self.model.config)

    # -- text ---------------------------------------------------------------------------------------------
    def render_chat(self, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            return plain_chat(messages)
        return self.tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    # -- scoring ------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def score(
        self,
        prompt_ids: Sequence[int],
        response_ids: Sequence[int],
        *,
        reuse: CachedContext | None = None,
        keep_cache: bool = False,
        probe: AttentionProbe | None = None,
    ) -> tuple[ResponseScore, CachedContext | None]:
        ids = list(prompt_ids) + list(response_ids)
        resp_len = len(response_ids)
        if resp_len == 0:
            raise ValueError("response_ids is empty")
        # The first scored logit sits at position len(prompt) - 1, so at least that token must be fed.
        prefix = 0
        if reuse is not None:  # the probe reads queries at absolute positions, so a cached prefix is fine there too
            prefix = min(reuse.common_prefix(ids), len(prompt_ids) - 1)
        cache = self._prefix_cache(reuse, prefix)
        input_ids = torch.tensor([ids[prefix:]], dtype=torch.long, device=self.device)  # [1, fed]
        # the probe's attention function reads every key itself; otherwise a cached pass may take the split kernel
        scope = probing(probe) if probe is not None else split_prefix_attention(self.split_attention and prefix > 0)
        with scope:
            out = self.model(
                input_ids=input_ids, **cache_kwargs(self.model, cache), use_cache=True, logits_to_keep=resp_len + 1
            )
        score = _response_score(out.logits[0], response_ids, self._stop_ids)  # positions len(prompt)-1 .. T-1
        cached = None
        if keep_cache:
            layers = returned_cache(out).layers
            kv = tuple((layer.keys, layer.values) for layer in layers)
            cached = _context(ids, kv, layers, len(ids))
        return score, cached

    @torch.inference_mode()
    def score_batch(
        self,
        items: Sequence[tuple[Sequence[int], Sequence[int]]],
        *,
        reuse: CachedContext | None = None,
        keep_cache: bool = False,
    ) -> tuple[list[ResponseScore], CachedContext | None]:
        """Score each (prompt, response) pair in one forward call over the prefix all of them share with ``reuse``;
        with ``keep_cache``, the cache of the last pair. One pair goes through ``score``."""
        if len(items) == 1:
            score, cached = self.score(*items[0], reuse=reuse, keep_cache=keep_cache)
            return [score], cached
        if any(len(r) == 0 for _, r in items):
            raise ValueError("response_ids is empty")
        seqs = [list(p) + list(r) for p, r in items]
        firsts = [len(p) - 1 for p, _ in items]  # the logit at the last prompt position scores the first token
        prefix = 0 if reuse is None else min(min(reuse.common_prefix(s), f) for s, f in zip(seqs, firsts, strict=True))
        width = max(len(s) for s in seqs) - prefix
        input_ids = torch.full((len(seqs), width), self._stop_ids[0], dtype=torch.long)  # [B, width], right-padded
        mask = torch.zeros((len(seqs), prefix + width), dtype=torch.long)
        for b, seq in enumerate(seqs):
            input_ids[b, : len(seq) - prefix] = torch.tensor(seq[prefix:])
            mask[b, : len(seq)] = 1
        keep = width - (min(firsts) - prefix)  # logits from the earliest scored position to the end
        out = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            **cache_kwargs(self.model, self._prefix_cache(reuse, prefix, batch=len(seqs))),
            use_cache=True,
            logits_to_keep=keep,
        )
        start = prefix + width - keep  # absolute position of kept logit 0
        scores = [
            _response_score(out.logits[b, f - start : f - start + len(r) + 1], r, self._stop_ids)
            for b, (f, (_, r)) in enumerate(zip(firsts, items, strict=True))
        ]
        cached = None
        if keep_cache:
            n = len(seqs[-1])
            layers = returned_cache(out).layers
            kv = tuple((layer.keys[-1:, :, :n], layer.values[-1:, :, :n]) for layer in layers)
            cached = _context(seqs[-1], kv, layers, prefix + width)
        return scores, cached

    def _prefix_cache(self, reuse: CachedContext | None, prefix: int, *, batch: int = 1):
        """A fresh cache holding ``reuse``'s first ``prefix`` positions, repeated over ``batch`` rows."""
        from transformers import DynamicCache

        if reuse is None or prefix <= 0:
            return DynamicCache(config=self.model.config)
        data = [(k[:, :, :prefix], v[:, :, :prefix]) for k, v in reuse.kv]
        if batch > 1:
            data = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in data]
        return DynamicCache(ddp_cache_data=data, config=self.model.config)

    @torch.inference_mode()
    def generate(
        self,
        prompt_ids: Sequence[int],
        *,
        max_new_tokens: int,
        reuse: CachedContext | None = None,
        temperature: float | None = None,
        seed: int = 0,
    ) -> list[int]:
        """Greedy continuation, or with ``temperature`` a sample (no top-k/top-p cut; torch's RNG forked and seeded
        with ``seed``). With ``reuse``, the prompt's common prefix with that cached sequence is not fed again (the
        prompts of answer flips and policy replay share most of their tokens with the full one)."""
        input_ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=self.device)
        prefix = min(reuse.common_prefix(prompt_ids), len(prompt_ids) - 1) if reuse is not None else 0
        cache = self._prefix_cache(reuse, prefix) if prefix > 0 else None
        decoding = (
            {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
            if temperature is None
            else {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                **cache_kwargs(self.model, cache),
                max_new_tokens=max_new_tokens,
                eos_token_id=self._stop_ids,
                pad_token_id=self._stop_ids[0],
                **decoding,
            )
        new = out[0, input_ids.shape[1] :].tolist()
        while new and new[-1] in self._stop_ids:
            new.pop()
        return new

    @torch.inference_mode()
    def generate_batch(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int | Sequence[int],  # one budget for all rows, or one per row
        reuses: Sequence[CachedContext | None],
    ) -> list[list[int]]:
        """Greedy continuations of several prompts, decoded as one batch: each row's prompt is first cached on its
        own (from its ``reuses`` entry, feeding only what that lacks), then the caches are left-padded into one
        preallocated buffer, and every step feeds one token per row at that row's own position, masking the
        padding; a row leaves the batch when it stops or reaches its budget. Token for token what ``generate``
        returns row by row (a decode step is memory-bound: B rows cost far less than B steps). Models with
        sliding-window layers decode row by row."""
        budgets = row_budgets(max_new_tokens, len(prompts))
        out: list[list[int]] = [[] for _ in prompts]
        rows = [b for b in range(len(prompts)) if budgets[b] > 0]
        if not rows:
            return out
        width = max(len(prompts[b]) - 1 for b in rows)  # every row's cache ends here
        cache = self._decode_buffer(width + max(budgets[b] for b in rows))
        if cache is None:
            return [
                self.generate(p, max_new_tokens=n, reuse=r) if n > 0 else []
                for p, n, r in zip(prompts, budgets, reuses, strict=True)
            ]
        lengths = [len(prompts[b]) - 1 for b in rows]
        mask = _fill_left_padded(cache, [self._prompt_cache(prompts[b], reuses[b]) for b in rows], lengths)
        tokens = torch.tensor([[prompts[b][-1]] for b in rows], dtype=torch.long)
        positions = torch.tensor([[n] for n in lengths], dtype=torch.long)
        while rows:
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long)], dim=1)
            step = self.model(
                input_ids=tokens.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                **cache_kwargs(self.model, cache),
                use_cache=True,
            )
            chosen = step.logits[:, -1].argmax(dim=-1).cpu()
            keep = []
            for r, (b, token) in enumerate(zip(rows, chosen.tolist(), strict=True)):
                if token not in self._stop_ids:
                    out[b].append(int(token))
                    if len(out[b]) < budgets[b]:
                        keep.append(r)
            if len(keep) < len(rows):
                index = torch.tensor(keep, dtype=torch.long)
                _keep_rows(cache, index)
                mask, chosen, positions = mask[index], chosen[index], positions[index]
            rows = [rows[r] for r in keep]
            tokens, positions = chosen[:, None], positions + 1
        return out

    def _decode_buffer(self, length: int):
        """A preallocated cache of ``length`` positions (None where a layer is not full attention)."""
        from transformers import StaticCache
        from transformers.cache_utils import StaticLayer

        cache = StaticCache(config=self.model.config, max_cache_len=length)
        return cache if all(type(layer) is StaticLayer for layer in cache.layers) else None

    def _prompt_cache(self, prompt: Sequence[int], reuse: CachedContext | None) -> list[tuple]:
        """Keys and values of ``prompt`` but its last token, from ``reuse`` and one forward over what it lacks."""
        need = len(prompt) - 1
        prefix = min(reuse.common_prefix(prompt), need) if reuse is not None else 0
        if prefix == need and reuse is not None:
            return [(k[:1, :, :need], v[:1, :, :need]) for k, v in reuse.kv]
        cache = self._prefix_cache(reuse, prefix)
        if need > prefix:
            fed = torch.tensor([list(prompt[prefix:need])], dtype=torch.long, device=self.device)
            cache = returned_cache(
                self.model(input_ids=fed, **cache_kwargs(self.model, cache), use_cache=True, logits_to_keep=1)
            )
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _count(self, module, args, kwargs) -> None:
        """One pass per sequence fed (a batch of B rows counts B), and the real tokens fed (padding excluded)."""
        ids = kwargs.get("input_ids")
        if ids is None and args:
            ids = args[0]
        fed = ids if ids is not None else kwargs.get("inputs_embeds")
        if fed is None:
            self.counter.forward_passes += 1
            return
        rows, width = int(fed.shape[0]), int(fed.shape[1])
        mask = kwargs.get("attention_mask")
        real = rows * width if mask is None or mask.dim() != 2 else int(mask[:, -width:].sum())
        self.counter.forward_passes += rows
        self.counter.tokens_processed += real


def _fill_left_padded(cache, kv: Sequence[list[tuple]], lengths: Sequence[int]) -> torch.Tensor:
    """Copy each row's keys and values into the preallocated ``cache`` (a ``StaticCache``), right-aligned at the
    longest row's length, and return the attention mask [B, width] that hides the padding on the left."""
    width = max(lengths)
    for index, layer in enumerate(cache.layers):
        k0, v0 = kv[0][index]
        empty = (len(kv), k0.shape[1], 0)
        layer.lazy_initialization(k0.new_empty((*empty, k0.shape[3])), v0.new_empty((*empty, v0.shape[3])))
        for b, (row, length) in enumerate(zip(kv, lengths, strict=True)):
            k, v = row[index]
            layer.keys[b, :, width - length : width] = k[0, :, :length]
            layer.values[b, :, width - length : width] = v[0, :, :length]
        layer.cumulative_length.add_(width)  # the next step writes at position ``width``
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for b, length in enumerate(lengths):
        mask[b, width - length :] = 1
    return mask


def _keep_rows(cache, index: torch.Tensor) -> None:
    """Drop the rows of a ``StaticCache`` not in ``index`` (the rows that stopped): later steps skip them."""
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, index.to(layer.keys.device))
        layer.values = layer.values.index_select(0, index.to(layer.values.device))
        layer.batch_size = len(index)


def _response_score(logits: torch.Tensor, response_ids: Sequence[int], stop_ids: Sequence[int]) -> ResponseScore:
    """Float64 log-probs of ``response_ids``, the top-1 minus top-2 margins, and what greedy decoding is known to
    emit, from the logits [len + 1, vocab] before each response token and after the last."""
    logprobs = torch.log_softmax(logits[: len(response_ids)].double(), dim=-1)
    targets = torch.tensor(list(response_ids), dtype=torch.long, device=logprobs.device)
    token_lp = logprobs.gather(1, targets[:, None])[:, 0].cpu().numpy()  # [resp_len]
    top2 = logprobs.topk(2, dim=-1).values  # [resp_len, 2]
    margins = (top2[:, 0] - top2[:, 1]).cpu().numpy()  # [resp_len] how far the greedy choice leads
    known, stops = greedy_known(logits.argmax(dim=-1).tolist(), response_ids, stop_ids)
    return ResponseScore(token_logprobs=token_lp, margins=margins, greedy_known=known, greedy_stops=stops)


def greedy_known(argmax: Sequence[int], response_ids: Sequence[int], stop_ids: Sequence[int]) -> tuple[tuple, bool]:
    """(tokens, stops): greedy decoding emits the response while each of its tokens is the argmax, then the first
    argmax that differs (``argmax`` has one more entry, after the response); a stop token ends it."""
    known: list[int] = []
    for t, token in enumerate(argmax):
        if token in stop_ids:
            return tuple(known), True
        known.append(int(token))
        if t >= len(response_ids) or token != response_ids[t]:
            break
    return tuple(known), False


def _context(ids: Sequence[int], kv, layers, fed: int) -> CachedContext:
    """The cache of a pass over ``fed`` positions, reusable where every layer kept every position. A sliding-window
    layer (Gemma 2/3, Mistral) keeps only its last W - 1 keys, so a longer pass's cache holds no prefix a later pass
    could take: it is kept without ids, and nothing is reused from it."""
    whole = all(layer.keys.shape[2] >= fed for layer in layers)
    return CachedContext(ids=tuple(ids) if whole else (), kv=kv)
