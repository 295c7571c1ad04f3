"""Turn pydantic validation errors into field paths a person can read: ``pipeline.documents[0].text``."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError


def format_loc(loc: Sequence[str | int]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


class PathValueError(ValueError):
    """A validator's error that names where, below the validated object, the problem is (``steps[2].tool``)."""

    def __init__(self, path: Sequence[str | int], msg: str) -> None:
        super().__init__(msg)
        self.path = tuple(path)
        self.msg = msg


def validation_fields(exc: ValidationError) -> list[tuple[str, str]]:
    """(path, message) per error; union tags such as ``rag`` are dropped from the path."""
    out: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if p not in _UNION_TAGS]
        msg = err["msg"].removeprefix("Value error, ")
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, PathValueError):
            loc, msg = loc + list(cause.path), cause.msg
        out.append((format_loc(loc), msg))
    return out


_UNION_TAGS = {"rag", "agent", "retriever"}
