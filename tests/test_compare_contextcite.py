"""CI-sized run of benchmarks/compare_contextcite.py: 2 short cases, few ablations, every method present."""

import importlib.util
import json
import math
import sys

import pytest
from cases import FICTIONAL_DOC, FICTIONAL_QUERY, FICTIONAL_RESPONSE, FILLER_DOCS, ROOT

BENCH = ROOT / "benchmarks"


def _load(name):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _records():
    """Two HotpotQA-shaped records: the fictional fact plus two fillers, then a plain-knowledge question."""
    key_id, key_text = FICTIONAL_DOC
    first = [FILLER_DOCS[0], (key_id, key_text), FILLER_DOCS[1]]
    second = [FILLER_DOCS[2], FILLER_DOCS[3], FILLER_DOCS[4]]
    return [
        {"id": "fictional", "question": FICTIONAL_QUERY, "answer": FICTIONAL_RESPONSE, "gold_document_ids": [key_id],
         "documents": [{"id": i, "text": t} for i, t in first]},
        {"id": "ocean", "question": "Which is the largest ocean on Earth?", "answer": "The Pacific Ocean.",
         "gold_document_ids": ["f4"], "documents": [{"id": i, "text": t} for i, t in second]},
    ]  # fmt: skip


def test_two_case_run_has_every_method_with_finite_values(model, tmp_path, monkeypatch):
    bench = _load("compare_contextcite")
    runner = bench.contextcite_runner
    try:
        runner.import_context_cite()
        with_cc = True
    except runner.ContextCiteUnavailable as exc:
        with_cc = False
        reason = str(exc)
    data = tmp_path / "data"
    data.mkdir()
    (data / bench.FILES["hotpotqa"]).write_text("\n".join(json.dumps(r) for r in _records()) + "\n")
    out = tmp_path / "out.json"
    monkeypatch.setattr("faithaudit.audits.model.registry.load_adapter", lambda *a, **k: model)
    argv = ["--dataset", "hotpotqa", "--limit", "2", "--data-dir", str(data), "--json", str(out)]
    argv += ["--num-ablations", "4", "--eval-masks", "6", "--audit-num-ablations", "4"]
    argv += ["--flip-max-new-tokens", "8"]
    if not with_cc:
        argv.append("--no-contextcite")
    assert bench.main(argv) == 0
    summary = json.loads(out.read_text())
    assert summary["cases"] == 2
    expected = set(bench.METHODS) if with_cc else set(bench.METHODS) - {"contextcite"}
    assert set(summary["methods"]) == expected
    for name, m in summary["methods"].items():
        values = [m["recall_at_1"], m["recall_at_2"], *m["topk_logprob_drop"].values()]
        values += [m["seconds_median"], m["tokens_processed_median"]]
        assert all(v is not None and math.isfinite(v) for v in values), name
        assert m["lds"] is None or math.isfinite(m["lds"]), name
    assert len(out.with_suffix(".cases.jsonl").read_text().splitlines()) == 2
    # The recorded samples replay the fixed fit exactly (what benchmarks/stopping_rules.py relies on).
    rules = _load("stopping_rules")
    cases = rules.load([out.with_suffix(".cases.jsonl")])
    records = {r["id"]: r for r in map(json.loads, out.with_suffix(".cases.jsonl").read_text().splitlines())}
    assert [c.id for c in cases] == ["fictional", "ocean"]
    for case in cases:
        weights, masks = rules.run_candidate(case, rules.Candidate("fixed", None))
        assert masks == 4
        recorded = records[case.id]["methods"]["context_ablation"]
        assert weights.round(6).tolist() == pytest.approx(recorded["scores"], abs=1e-5)
        assert rules.evaluate(case, weights)["lds"] == pytest.approx(recorded["lds"], abs=1e-9)
        samples = records[case.id]["samples"]
        assert not {m.tobytes() for m in case.eval_masks} & {m.tobytes() for m in case.fit_masks}
        if with_cc:  # the peer's solver, fit live on the same masks and targets, agrees
            assert samples["peer_solver_max_abs_diff"] <= 1e-3
    if with_cc:
        assert summary["contextcite_version"] and math.isfinite(summary["time_ratio_full_vs_contextcite"])
    else:
        pytest.skip(f"ContextCite part skipped: {reason}")


def test_metrics_and_rollout_on_known_inputs():
    import numpy as np
    import torch

    bench = _load("compare_contextcite")
    scores = np.array([0.1, 3.0, -1.0, 2.0])
    assert bench.top_k(scores, 2) == [1, 3]
    assert bench.recall_at_k(scores, [1, 2], 1) == 1.0 and bench.recall_at_k(scores, [1, 2], 2) == 0.5
    assert bench.recall_at_k(scores, [3], 2) == 1.0  # min(k, |gold|) in the denominator
    masks = np.array([[1, 1, 0, 0], [0, 1, 1, 1], [1, 0, 0, 1], [0, 0, 1, 0]], dtype=bool)
    assert bench.lds(scores, masks, masks.astype(float) @ scores) == 1.0
    # Rollout through layers that attend only to themselves keeps each row on its own token.
    eye = [torch.eye(5) for _ in range(3)]
    np.testing.assert_allclose(bench.rollout.rollout_rows(eye, [2, 4]), np.eye(5)[[2, 4]])
    causal = torch.tril(torch.ones(5, 5))
    uniform = [causal / causal.sum(dim=-1, keepdim=True)] * 2
    np.testing.assert_allclose(bench.rollout.rollout_rows(uniform, [4]).sum(), 1.0, atol=1e-6)


def test_default_audit_ratios_carry_their_intervals_and_paired_differences():
    bench = _load("compare_contextcite")

    def record(audit_s, cc_s, recall, lds):
        return {
            "methods": {
                "contextcite": {"seconds": cc_s, "tokens_processed": 100, "recall_at_2": 0.5, "lds": 0.8},
                "default_audit": {"seconds": audit_s, "tokens_processed": 90, "recall_at_2": recall, "lds": lds},
            },
            "default_audit_contextcite_stages": {"seconds": audit_s / 2, "tokens": 45},
            "default_audit_by_stage": {},
        }

    rows = [record(9, 10, 1.0, 0.9), record(12, 10, 0.5, None), record(11, 10, 0.5, 0.7), record(8, 10, 0.0, 0.8)]
    out = bench.default_audit_ratios(rows)
    total = out["default_audit_ratio_intervals"]["time_ratio_default_audit_total_vs_contextcite"]
    assert out["time_ratio_default_audit_total_vs_contextcite"] == total["median"] == 1.0
    assert (total["low"], total["high"], total["coverage"], total["cases"]) == (0.8, 1.2, 0.875, 4)
    paired = out["default_audit_paired_vs_contextcite"]
    assert (paired["recall_at_2"]["difference"], paired["recall_at_2"]["cases"]) == (0.0, 4)
    assert (paired["recall_at_2"]["a_higher"], paired["recall_at_2"]["b_higher"]) == (1, 1)
    assert paired["lds"]["cases"] == 3  # the case without an LDS is left out
    assert paired["lds"]["difference"] == 0.0
