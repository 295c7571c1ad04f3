"""``report.controls`` (what every figure was measured against) and ``report.limitations`` (plain sentences)."""

from __future__ import annotations

import hashlib
import json
import re
from importlib.metadata import PackageNotFoundError, version

from faithaudit.api_schemas import AuditRequest, Controls
from faithaudit.api_schemas.report import ComputeControls, MaskControls
from faithaudit.audits.ablation import BOOTSTRAP_RESAMPLES, AdaptivePolicy
from faithaudit.audits.context import Findings, Surrogate
from faithaudit.audits.model.adapter import ModelAdapter
from faithaudit.audits.placebos import PLACEBO_SEED_OFFSET
from faithaudit.audits.prompt.layout import SourceLayout

_QUANT = re.compile(r"\.(Q\d+_[A-Z0-9_]+|F16|BF16|F32)\.gguf$", re.IGNORECASE)


def request_sha256(request: AuditRequest) -> str:
    """SHA-256 of the canonical request: sorted keys, fields left at their defaults omitted (so a field added to
    the schema later does not change the hash of a request that does not use it)."""
    data = request.model_dump(mode="json", exclude_defaults=True)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def model_weights(model: ModelAdapter) -> str:
    dtype = getattr(model, "dtype_name", "float32")
    revision = model.revision
    if ".gguf" in revision or revision.startswith("gguf:"):
        quant = _QUANT.search(revision)
        stored = f"GGUF {quant.group(1).upper()} quantised" if quant else "GGUF"
        return f"{stored} weights dequantized to {dtype}; {_head(dtype)}log-probs in float64"
    return f"{dtype} weights; {_head(dtype)}log-probs in float64"


def _head(dtype: str) -> str:
    return "" if dtype == "float32" else "LM head in float32; "


def compute_controls(model: ModelAdapter) -> ComputeControls | None:
    """The worker's device, dtype and batching; None for an adapter without them (the scripted fake)."""
    compute = getattr(model, "compute", None)
    if compute is None:
        return None
    dtype = getattr(model, "dtype_name", compute.dtype)
    return ComputeControls(
        device=str(getattr(model, "device", compute.device)) if compute.device != "auto" else "auto",
        dtype=dtype,
        lm_head_dtype="float32",
        attention_implementation=getattr(model, "attention_implementation", "unknown"),
        batch_size=compute.batch_size,
    )


def faithaudit_version() -> str:
    try:
        return version("faithaudit")
    except PackageNotFoundError:
        return "unknown"


POSITIONS_RAG = "k: before the k-th document (0-based); their count: after the last"
POSITIONS_AGENT = (
    "k: before the k-th tool call from the first audited one on (0-based); their count: after the last turn"
)


def build_controls(request: AuditRequest, model: ModelAdapter, layout: SourceLayout, found: Findings) -> Controls:
    opts = request.audit
    check = found.flip_check
    return Controls(
        seed=opts.seed,
        decoding={
            "strategy": "greedy",
            "max_new_tokens": request.model.max_new_tokens,
            "flip_max_new_tokens": None if check is None else check.max_new_tokens,
            "flip_rule": "a regenerated answer flips when it loses a word of the answer span",
        },
        masks=_masks(request, found.surrogate) if found.surrogate is not None else None,
        label_rules={k: float(v) for k, v in opts.labels.model_dump().items()},
        placebos={
            "count": 0 if found.placebos is None else len(found.placebos.texts),
            "generator": "neutral English filler sentences, length-matched to a seeded real source, no word shared "
            "with the query",
            "seed": opts.seed + PLACEBO_SEED_OFFSET,
            "positions": [] if found.placebos is None else list(found.placebos.positions),
            "inserted_as": "a noop tool step" if layout.steps else "a document",
            "positions_are": POSITIONS_AGENT if layout.steps else POSITIONS_RAG,
        },
        orders=_orders(layout, found),
        attention={
            "layers": model.num_layers,
            "heads": getattr(model, "num_heads", None),
            "averaged_over": "all layers and heads, the response rows",
        },
        model_weights=model_weights(model),
        compute=compute_controls(model),
        faithaudit_version=faithaudit_version(),
        request_sha256=request_sha256(request),
    )


def _masks(request: AuditRequest, fit: Surrogate) -> MaskControls:
    opts = request.audit
    designs = {
        "exhaustive": "every keep-mask (2^n <= the budget): exact Banzhaf values, 4-fold cross-validated LDS",
        "random": "distinct Bernoulli(keep_probability) masks from one seeded stream (ContextCite's design, "
        "without replacement); 4-fold cross-validated LDS",
        "adaptive": f"adaptive: distinct masks in batches up to {AdaptivePolicy().max_masks}, stopping once the fit "
        "is stable; each batch predicted before it joins the fit",
    }
    return MaskControls(
        count=fit.masks,
        held_out=fit.held_out,
        design=designs[fit.design],
        design_kind=fit.design,
        keep_probability=opts.keep_probability,
        lasso_alpha=opts.lasso_alpha,
        bootstrap_resamples=BOOTSTRAP_RESAMPLES if fit.interval is not None else None,
    )


def limitations(request: AuditRequest, model: ModelAdapter, layout: SourceLayout, found: Findings) -> list[str]:
    out = []
    production = request.model.production_model
    if production is not None and production != model.name:
        out.append(
            f"The local model {model.name} is a proxy for {production}: reliance and attention are the proxy's; a "
            "source the production model relies on may differ."
        )
    check = found.flip_check
    if check is not None and not check.counted:
        why = _why_unstable(check, request.audit.labels.min_greedy_margin)
        out.append(f"The greedy answer is unstable ({why}): answer flips are ignored.")
    if found.placebos is None:
        out.append("No placebo controls: there is no noise floor, and labels use the fixed thresholds alone.")
    if found.orders is None and layout.reorderable and request.audit.orders <= 1:
        out.append("One document order only: intervals are reliance +- the noise floor.")
    if not layout.reorderable and layout.steps:
        out.append("A trace keeps its causal order: intervals are reliance +- the noise floor.")
    if any(not s.text.isascii() for s in layout.sources):
        out.append("Placebos are English filler; sources in another language may make the noise floor too low.")
    return out


def _why_unstable(check, min_margin: float) -> str:
    if not check.answer_span:
        return "the response adds no word to the query"
    if check.margin is None:
        return "no greedy margin was measured over the answer span"
    if check.margin < min_margin:
        return f"greedy margin {check.margin:.2f} nats < {min_margin:g}"
    return f"{check.placebo_flip_rate:.0%} of placebo insertions flip it"


def _orders(layout: SourceLayout, found: Findings) -> dict:
    if found.orders is None:
        return {"count": 1, "permutations": [], "causal": not layout.reorderable}
    return {
        "count": len(found.orders.permutations),
        "permutations": [list(p) for p in found.orders.permutations],
        "causal": not layout.reorderable,
        "rescored_sources": [src.id for src, m in zip(layout.sources, found.orders.rescored, strict=True) if m],
        "rescored_are": "the sources whose label an order could change (reliance at or above the noise floor, or at "
        "or below min(distracting, -floor)); the others keep reliance +- floor as their interval",
    }
