"""Record the golden reports that pin the engine's behaviour across refactors.

    .venv/bin/python tests/data/golden/record.py        # rewrites rag.json and agent.json beside this file

Two examples (RAG and agent) at ``num_ablations: 8`` keep the test short (``cases.golden_request``).
``tests/test_golden_reports.py`` re-runs them and compares: labels, ranks and flags exactly, every float within
1e-5, timings ignored. Re-record only when a change of behaviour is intended, and say so in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/, for ``cases``


def main() -> int:
    from cases import GOLDEN_CASES, golden_request

    from faithaudit.audits.model.registry import load_model
    from faithaudit.audits.run import audit_request
    from faithaudit.config import get_settings
    from faithaudit.tools import registry_for

    model = load_model(None, get_settings())
    for name in GOLDEN_CASES:
        report = audit_request(golden_request(name), model, tools=registry_for)
        (HERE / f"{name}.json").write_text(json.dumps(report.model_dump(mode="json"), indent=1, sort_keys=True) + "\n")
        print(f"wrote {name}.json: labels {[s.label for s in report.sources]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
