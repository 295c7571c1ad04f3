"""A bounded fuzz run of the HTTP API from its own OpenAPI document (schemathesis, in-process over ASGI): bodies,
parameters and headers generated from the declared schemas, derandomized (a fixed seed), 25 examples per
operation, no worker consuming the queue. No answer may be a 5xx, and every answer must have a status, a content
type and a body the document declares. The long run is ``make fuzz`` (``benchmarks/fuzz_api.py``)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from fuzz_api import fuzz  # noqa: E402


def test_no_5xx_and_every_answer_is_declared(tmp_path):
    summary = fuzz(tmp_path, examples=25, queue=f"fa-fuzz-{uuid.uuid4().hex[:8]}")
    assert summary["operations"] >= 14 and summary["cases"] >= 14 * 10, summary
    assert summary["failures"] == [], summary["failures"][:5]
