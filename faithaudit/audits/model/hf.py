"""``HFModelAdapter``: the ``ModelAdapter`` protocol (``audits.model.adapter``) for any Hugging Face causal LM.

Loading by name and caching live in ``audits.model.registry``. Scores are float64 log-softmax over the logits of
the response positions; a reused ``CachedContext`` holds the per-layer keys and values of a scored sequence.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from faithaudit.audits.model.adapter import CachedContext, ChatPromptMixin, ForwardCounter, ResponseScore
from faithaudit.audits.model.chat import plain_chat
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

    def __post_init__(self) -> None:
        self.model.eval()
        cfg = self.model.config
        self.context_window = int(getattr(cfg, "max_position_embeddings", 2048))
        self.num_layers = int(cfg.num_hidden_layers)
        self.num_heads = int(getattr(cfg, "num_attention_heads", 0))
        self.dtype_name = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        self.model.register_forward_pre_hook(self._count, with_kwargs=True)
        stop = {self.tokenizer.eos_token_id}
        for tok in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
            tid = self.tokenizer.convert_tokens_to_ids(tok)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id and tid >= 0:
                stop.add(tid)
        self._stop_ids = sorted(t for t in stop if t is not None)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, name: str | None = None, revision: str = "local", threads: int | None = None
    ) -> HFModelAdapter:
        """Load from a local folder in Hugging Face format. Never reaches a hub."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        attn = register_probe_attention()
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            str(path), local_files_only=True, dtype=torch.float32, attn_implementation=attn
        )
        return cls(model=model, tokenizer=tokenizer, name=name or str(path), revision=revision)

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
        from transformers import DynamicCache

        ids = list(prompt_ids) + list(response_ids)
        resp_len = len(response_ids)
        if resp_len == 0:
            raise ValueError("response_ids is empty")
        # The first scored logit sits at position len(prompt) - 1, so at least that token must be fed.
        prefix = 0
        if reuse is not None and probe is None:
            prefix = min(reuse.common_prefix(ids), len(prompt_ids) - 1)
        cache = DynamicCache(config=self.model.config)
        if prefix > 0:
            cache = DynamicCache(
                ddp_cache_data=[(k[:, :, :prefix], v[:, :, :prefix]) for k, v in reuse.kv],
                config=self.model.config,
            )
        input_ids = torch.tensor([ids[prefix:]], dtype=torch.long)  # [1, fed]
        if probe is not None:
            with probing(probe):
                out = self.model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=resp_len + 1)
        else:
            with split_prefix_attention(self.split_attention and prefix > 0):
                out = self.model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=resp_len + 1)
        logits = out.logits[0, :-1].double()  # [resp_len, vocab]: positions len(prompt)-1 .. T-2
        logprobs = torch.log_softmax(logits, dim=-1)
        targets = torch.tensor(list(response_ids), dtype=torch.long)
        token_lp = logprobs.gather(1, targets[:, None])[:, 0].numpy()  # [resp_len]
        top2 = logprobs.topk(2, dim=-1).values  # [resp_len, 2]
        margins = (top2[:, 0] - top2[:, 1]).numpy()  # [resp_len] how far the greedy choice leads
        cached = None
        if keep_cache:
            kv = tuple((layer.keys, layer.values) for layer in out.cache.layers)
            cached = CachedContext(ids=tuple(ids), kv=kv)
        return ResponseScore(token_logprobs=token_lp, margins=margins), cached

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
        from transformers import DynamicCache

        input_ids = torch.tensor([list(prompt_ids)], dtype=torch.long)
        prefix = min(reuse.common_prefix(prompt_ids), len(prompt_ids) - 1) if reuse is not None else 0
        cache = None
        if prefix > 0:
            assert reuse is not None
            cache = DynamicCache(
                ddp_cache_data=[(k[:, :, :prefix], v[:, :, :prefix]) for k, v in reuse.kv],
                config=self.model.config,
            )
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
                cache=cache,
                max_new_tokens=max_new_tokens,
                eos_token_id=self._stop_ids,
                pad_token_id=self._stop_ids[0],
                **decoding,
            )
        new = out[0, input_ids.shape[1] :].tolist()
        while new and new[-1] in self._stop_ids:
            new.pop()
        return new

    def _count(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids")
        if ids is None and args:
            ids = args[0]
        if ids is None:
            emb = kwargs.get("inputs_embeds")
            fed = int(emb.shape[0] * emb.shape[1]) if emb is not None else 0
        else:
            fed = int(ids.numel())
        self.counter.forward_passes += 1
        self.counter.tokens_processed += fed
