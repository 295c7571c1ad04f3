"""The importers' one error: a 422 over HTTP and exit 2 on the command line, naming where the problem is."""

from __future__ import annotations

from faithaudit.errors import InvalidRequestError


class ImportFormatError(InvalidRequestError):
    code = "invalid_import"

    @classmethod
    def at(cls, where: str, message: str) -> ImportFormatError:
        """``where``: a span ("span 'ChatOpenAI' (1a2b...) attribute llm.output_messages") or a line ("line 3")."""
        return cls.for_field(where, message)
