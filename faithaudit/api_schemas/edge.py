"""The hostile edge of every JSON body, checked once before any schema: strings that cannot be stored or sent
back (a lone UTF-16 surrogate, a NUL), keys included, and nesting deeper than anything a request needs.

A lone surrogate reaches Python from a JSON escape (``"\\ud800"``); it would break the tokenizer, PostgreSQL, and
every later response that echoes it. A NUL is refused by PostgreSQL text columns. Both are refused here with a
422 naming the field, so that what is stored can always be read back.
"""

from __future__ import annotations

import re
from typing import Any

from faithaudit.api_schemas.errors import format_loc

MAX_DEPTH = 32  # objects and arrays inside one another; a real request needs under 10
_BAD = re.compile("[\x00\ud800-\udfff]")


class EdgeError(ValueError):
    def __init__(self, path: str, msg: str) -> None:
        super().__init__(f"{path}: {msg}")
        self.path, self.msg = path, msg


def printable(text: str) -> str:
    """``text`` with lone surrogates written as escapes: safe to put in a JSON response or a log line."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def bad_character(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None."""
    found = _BAD.search(text)
    if found is None:
        return None
    return "contains a NUL character" if found.group() == "\x00" else "contains a lone UTF-16 surrogate"


def check_edge(data: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise ``EdgeError`` for the first bad string (key or value) or a nesting deeper than ``max_depth``."""
    stack: list[tuple[Any, list[str | int], int]] = [(data, [], 0)]
    while stack:
        value, loc, depth = stack.pop()
        if isinstance(value, str):
            why = bad_character(value)
            if why:
                raise EdgeError(format_loc(loc), why)
        elif isinstance(value, dict | list):
            if depth >= max_depth:
                raise EdgeError(format_loc(loc), f"nested deeper than {max_depth} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and bad_character(key):
                    raise EdgeError(format_loc(loc), f"a key ({printable(key)!r}) {bad_character(key)}")
                stack.append((item, [*loc, printable(key) if isinstance(key, str) else key], depth + 1))
