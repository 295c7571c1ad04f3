"""``report.token_scores``: each response token's log-prob with the full context, with none, and without each
source (the passes leave_one_out and no_context already scored), for the report page's per-token heatmap."""

from __future__ import annotations

from collections.abc import Sequence

from faithaudit.api_schemas import TokenScore
from faithaudit.audits.context import Findings
from faithaudit.audits.model.adapter import ModelAdapter
from faithaudit.audits.report.sources import rounded
from faithaudit.audits.scoring import BaseRun

MAX_TOKENS = 1024


def token_texts(tokenizer: ModelAdapter, ids: Sequence[int]) -> list[str]:
    """Each token's text as it reads in context: the growth of the decoded prefix. A token that ends inside a
    multi-byte character (the prefix decodes to a trailing U+FFFD) gets "", and the token that completes the
    character gets all of it, so the texts always join into the decoded response."""
    texts, before = [], ""
    for end in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:end])
        if text.endswith("\ufffd") and end < len(ids):
            texts.append("")  # the character is not complete yet
            continue
        common = len(before) if text.startswith(before) else len(_common_prefix(before, text))
        if common < len(before):  # an earlier partial character resolved: the last non-empty token gave too much
            texts[-1] = texts[-1][: max(0, len(texts[-1]) - (len(before) - common))] if texts else ""
        texts.append(text[common:])
        before = text
    return texts


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def token_scores(
    tokenizer: ModelAdapter, response_ids: Sequence[int], source_ids: Sequence[str], base: BaseRun, found: Findings
) -> list[TokenScore] | None:
    full = base.score.token_logprobs
    if len(response_ids) == 0 or len(full) != len(response_ids):
        return None
    count = min(len(response_ids), MAX_TOKENS)
    texts = token_texts(tokenizer, response_ids[:count])
    none = None if found.no_context is None else found.no_context.token_logprobs
    loo = found.loo_token_logprobs
    rows = []
    for t in range(count):
        by_source = {} if loo is None else {sid: rounded(full[t] - loo[i, t]) for i, sid in enumerate(source_ids)}
        rows.append(
            TokenScore(
                text=texts[t],
                logprob_full=rounded(full[t]),
                logprob_no_context=None if none is None else rounded(none[t]),
                context_gain=None if none is None else rounded(full[t] - none[t]),
                reliance_by_source=by_source,
            )
        )
    return rows
