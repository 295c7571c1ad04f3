"""Size limits on what a request asks to audit, checked the same way at submit time (no torch) and in the engine."""

from __future__ import annotations

from faithaudit.api_schemas import AuditRequest
from faithaudit.api_schemas.agent import AgentPipeline
from faithaudit.audits.prompt.sentences import split_sentences
from faithaudit.errors import InvalidRequestError


def check_source_limits(request: AuditRequest, *, max_sources: int | None, max_source_chars: int | None) -> None:
    """Too many sources, or a source text over the limit, is a field error naming where it is."""
    pipeline = request.pipeline
    if pipeline.kind == "retriever":  # its documents are known once retrieved; the engine checks them then
        return
    if isinstance(pipeline, AgentPipeline):
        trace = pipeline.trace(query=request.query)
        audited = pipeline.audit_steps if pipeline.audit_steps is not None else trace.auditable()
        count, unit, where = len(audited), "tool outputs", "pipeline.audit_steps"
        tool_turns = {t.step: t.origin for t in trace.turns if t.role == "tool"}
        texts = [
            (
                f"pipeline.{s.origin}.output" if pipeline.steps is not None else f"pipeline.{tool_turns[s.id]}.content",
                s.output,
            )
            for s in trace.steps
        ]
    else:
        documents = pipeline.documents
        if request.audit.granularity == "sentence":
            count, unit = sum(len(split_sentences(d.text)) for d in documents), "sentences"
        else:
            count, unit = len(documents), "documents"
        where = "pipeline.documents"
        texts = [(f"pipeline.documents[{i}].text", d.text) for i, d in enumerate(documents)]
    if max_sources is not None and count > max_sources:
        raise InvalidRequestError.for_field(where, f"{count} {unit} (sources) is over the limit of {max_sources}")
    if max_source_chars is not None:
        for path, text in texts:
            if len(text) > max_source_chars:
                raise InvalidRequestError.for_field(
                    path, f"{len(text)} characters is over the limit of {max_source_chars}"
                )
