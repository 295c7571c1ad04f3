"""Find the sources a response cites: ``[d1]`` by id, ``[1]`` by 1-based document position, ``[d1, d3]``."""

from __future__ import annotations

import re
from collections.abc import Sequence

_BRACKETS = re.compile(r"\[([^\[\]\n]{1,200})\]")
_SPLIT = re.compile(r"\s*[,;]\s*|\s+and\s+")


def cited_documents(response: str, document_ids: Sequence[str]) -> set[str]:
    """Ids of the documents the response cites. Unknown markers are ignored."""
    known = set(document_ids)
    cited: set[str] = set()
    for match in _BRACKETS.finditer(response):
        for token in _SPLIT.split(match.group(1).strip()):
            token = token.strip()
            if token in known:
                cited.add(token)
            elif token.isdigit() and 1 <= int(token) <= len(document_ids):
                cited.add(document_ids[int(token) - 1])
    return cited
