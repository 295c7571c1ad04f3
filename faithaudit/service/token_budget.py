"""Refuse, at submit time, a prompt longer than the model's context window, without importing torch.

The worker's model cache folder holds ``tokenizer.json``, the chat template and ``config.json``: the ``tokenizers``
library and jinja2 render and count the prompt exactly as the engine's layout does. When the model has not been
cached yet (no worker has loaded it), the check is skipped and the worker rejects such an audit instead.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from faithaudit.api_schemas import AuditRequest, PlannedCost
from faithaudit.audits.estimate import ApproxCounter, estimate_cost, estimate_from_layout
from faithaudit.audits.mechanism.budget import ModelShape, check_mechanism
from faithaudit.audits.model.adapter import ChatPromptMixin
from faithaudit.audits.model.chat import plain_chat
from faithaudit.audits.model.registry import materialized_folder
from faithaudit.audits.placebos import check_placebos_fit
from faithaudit.audits.prompt.layout import check_fits, check_paraphrases_fit, request_layout
from faithaudit.errors import InvalidRequestError


@dataclass(frozen=True)
class TokenizerOnly(ChatPromptMixin):
    """``TextAdapter`` (``audits.model.adapter``): the text half of the model adapter, without torch."""

    name: str
    context_window: int
    tokenizer: object
    template: object | None
    shape: ModelShape | None = None  # layers, heads, architecture: the mechanism method's checks

    def render_chat(self, messages, *, add_generation_prompt: bool) -> str:
        if self.template is None:
            return plain_chat(messages)
        return self.template.render(messages=list(messages), add_generation_prompt=add_generation_prompt)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids if text else []


def _raise_template_error(message: str):
    from jinja2 import TemplateError

    raise TemplateError(message)


def _load(name: str, folder: Path) -> TokenizerOnly:
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from tokenizers import Tokenizer

    config = json.loads((folder / "config.json").read_text())
    template_text = None
    if (folder / "chat_template.jinja").is_file():
        template_text = (folder / "chat_template.jinja").read_text()
    else:
        template_text = json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template")
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_template_error
    return TokenizerOnly(
        name=name,
        context_window=int(config.get("max_position_embeddings", 2048)),
        tokenizer=Tokenizer.from_file(str(folder / "tokenizer.json")),
        template=env.from_string(template_text) if template_text else None,
        shape=ModelShape.of_config(config),
    )


_LOADED: dict[tuple[str, Path], TokenizerOnly] = {}  # (model name, cache dir) -> its tokenizer, once loaded
_LOADING = threading.Lock()


def counter_for(model_name: str, cache_dir: Path) -> TokenizerOnly | None:
    """The model's tokenizer and chat template, once a worker has cached the model; else None (looked for again on
    the next call: finding the folder is a stat). Loaded once per process, by one thread: the first submits of a
    burst that finds the model just cached wait for one load (~0.14 s) instead of each running its own on the
    thread pool (ten at once held every submit of the burst for about a second)."""
    key = (model_name, Path(cache_dir))
    counter = _LOADED.get(key)
    if counter is not None:
        return counter
    folder = materialized_folder(model_name, cache_dir)
    if folder is None:
        return None
    with _LOADING:
        counter = _LOADED.get(key)
        if counter is None:
            counter = _LOADED[key] = _load(model_name, folder)
    return counter


@dataclass(frozen=True)
class Fitted:
    """The layout a submit checked against the window, for its planned cost (built once per submit)."""

    layout: object  # SourceLayout
    response_len: int


def check_prompt_fits(request: AuditRequest, *, model_name: str, cache_dir: Path) -> Fitted | None:
    """Raise ``InvalidRequestError`` (pipeline.documents) when over the window; the checked layout, or None when
    it could not check (the model is not cached here yet)."""
    counter = counter_for(model_name, cache_dir)
    if counter is None:
        if "mechanism" in request.audit.methods:  # source ids can be checked with any tokenizer
            layout, _, _ = request_layout(request, ApproxCounter())
            check_mechanism(request, [s.id for s in layout.sources], None)
        return None
    from jinja2 import TemplateError

    try:
        layout, _, response_len = request_layout(request, counter)
        prompt_len = len(layout.build().ids)
        check_fits(prompt_len, response_len, counter)
        check_placebos_fit(layout, request, counter, response_len)
        check_paraphrases_fit(request, counter, response_len)
        check_mechanism(
            request, [s.id for s in layout.sources], counter.shape, sequence_tokens=prompt_len + response_len
        )
    except TemplateError as exc:
        raise InvalidRequestError.for_field("prompt", f"the model's chat template refused this prompt: {exc}") from None
    return Fitted(layout=layout, response_len=response_len)


def planned_cost(
    request: AuditRequest,
    *,
    model_name: str,
    cache_dir: Path,
    retrieved_doc_chars: int | None = None,
    fitted: Fitted | None = None,
) -> PlannedCost:
    """The audit's planned passes and tokens (``audits.estimate``), with the model's tokenizer when cached; from
    the layout ``check_prompt_fits`` built, when given."""
    from jinja2 import TemplateError

    if fitted is not None:
        estimate = estimate_from_layout(request, fitted.layout, fitted.response_len, method="tokenizer")
        return PlannedCost(
            forward_passes=estimate.forward_passes, tokens=estimate.tokens, tokens_method=estimate.tokens_method
        )
    try:
        estimate = estimate_cost(request, counter_for(model_name, cache_dir), retrieved_doc_chars=retrieved_doc_chars)
    except TemplateError as exc:
        raise InvalidRequestError.for_field("prompt", f"the model's chat template refused this prompt: {exc}") from None
    return PlannedCost(
        forward_passes=estimate.forward_passes, tokens=estimate.tokens, tokens_method=estimate.tokens_method
    )
