"""Load a suite file (YAML or JSON) and resolve its cases to audit requests with their thresholds in force.

Precedence of thresholds, field by field: suite ``thresholds`` < the request file's ``thresholds`` < the case's
``thresholds``. A case left with no threshold at all is a bad suite. Every problem is an ``InvalidRequestError``
whose field path names the case (``cases[1].thresholds``) and whose message names it too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from faithaudit.api_schemas import AuditRequest, GateSuite, SuiteCase, Thresholds
from faithaudit.errors import FieldError, InvalidRequestError


@dataclass(frozen=True)
class ResolvedCase:
    index: int  # position among the resolved cases
    name: str
    request: AuditRequest  # thresholds already merged
    suite_index: int | None = None  # the suite's case it came from (a dataset case gives several)


def _bad(path: str, msg: str, *, where: str = "") -> InvalidRequestError:
    return InvalidRequestError(f"{where}{path}: {msg}", fields=[FieldError(path, msg)])


def parse_suite_data(data: object, *, where: str = "") -> GateSuite:
    try:
        return GateSuite.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError.from_validation(exc, "suite", context=where) from None


def load_suite(path: Path) -> GateSuite:
    """Read a ``.yaml``/``.yml`` or ``.json`` suite file."""
    where = f"{path}: "
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad("suite", f"cannot read ({exc})", where=where) from None
    if Path(path).suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise _bad("suite", f"not valid YAML ({str(exc)[:200]})", where=where) from None
    else:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise _bad("suite", f"not valid JSON ({str(exc)[:200]})", where=where) from None
    return parse_suite_data(data, where=where)


def merge_thresholds(*layers: Thresholds | None) -> Thresholds | None:
    merged: dict = {}
    for layer in layers:
        if layer is not None:
            merged.update(layer.model_dump(exclude_none=True))
    return Thresholds(**merged) if merged else None


def case_name(case: SuiteCase, index: int) -> str:
    if case.name:
        return case.name
    if case.path:
        return Path(case.path).stem
    return f"case-{index + 1}"


def resolve_cases(suite: GateSuite, *, base_dir: Path | None) -> list[ResolvedCase]:
    """Requests with merged thresholds, every file read and every row converted before anything runs;
    ``base_dir=None`` (the API) refuses case paths and datasets."""
    out: list[ResolvedCase] = []
    names: set[str] = set()
    for i, case in enumerate(suite.cases):
        for name, request, layers in _expand(case, i, base_dir):
            while name in names:
                name = f"{name}-{i + 1}"
            names.add(name)
            label = f"case {name!r} (cases[{i}])"
            thresholds = merge_thresholds(suite.thresholds, *layers)
            if thresholds is None:
                raise _bad(
                    f"cases[{i}].thresholds",
                    f"{label}: no threshold at all (set `thresholds` in the suite, the request or the case)",
                )
            request = request.model_copy(update={"thresholds": thresholds})
            out.append(ResolvedCase(index=len(out), name=name, request=request, suite_index=i))
    return out


def _expand(case: SuiteCase, i: int, base_dir: Path | None):
    """(name, request, threshold layers after the suite's) for one case, or for each row of its dataset."""
    name = case_name(case, i)
    label = f"case {name!r} (cases[{i}])"
    if case.request is not None:
        return [(name, case.request, (case.request.thresholds, case.thresholds))]
    if base_dir is None:
        field = "path" if case.path is not None else "dataset"
        raise _bad(f"cases[{i}].{field}", f"{label}: send the request inline (`request`); files are read by the CLI")
    if case.dataset is not None:
        return [(n, r, (r.thresholds, case.thresholds)) for n, r in _read_dataset(base_dir, case, i, label)]
    request = _read_request(base_dir, case.path, index=i, label=label)
    return [(name, request, (request.thresholds, case.thresholds))]


def _read_dataset(base_dir: Path, case: SuiteCase, i: int, label: str) -> list[tuple[str, AuditRequest]]:
    from faithaudit.importers.datasets import dataset_requests
    from faithaudit.importers.validate import checked_request

    path = Path(case.dataset) if Path(case.dataset).is_absolute() else Path(base_dir) / case.dataset
    field = f"cases[{i}].dataset"
    try:
        text = path.read_text(encoding="utf-8")
        data = _json_or_lines(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(field, f"{label}: cannot read {path} ({getattr(exc, 'strerror', None) or exc})") from None
    except (ValueError, RecursionError) as exc:
        raise _bad(field, f"{label}: {path} is neither JSON nor JSON Lines ({str(exc)[:200]})") from None
    try:
        rows = dataset_requests(data, case.format, name=case.name or path.stem)
        return [(name, checked_request(body, where=name)) for name, body in rows]
    except InvalidRequestError as exc:
        raise _bad(field, f"{label}: {exc.message}") from None


def _json_or_lines(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def check_corpora(cases: list[ResolvedCase], exists) -> None:
    """Every retriever case's corpus exists (``exists(name)``), so a missing one is a bad suite before any audit."""
    for case in cases:
        pipeline = case.request.pipeline
        if pipeline.kind == "retriever" and not exists(pipeline.corpus):
            raise _bad(
                f"cases[{case.index if case.suite_index is None else case.suite_index}].request.pipeline.corpus",
                f"case {case.name!r}: no corpus {pipeline.corpus!r} (`faithaudit corpus add` it first)",
            )


def _read_request(base_dir: Path, rel: str, *, index: int, label: str) -> AuditRequest:
    path = Path(rel) if Path(rel).is_absolute() else Path(base_dir) / rel
    field = f"cases[{index}].path"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(field, f"{label}: cannot read {path} ({getattr(exc, 'strerror', None) or exc})") from None
    except (ValueError, RecursionError) as exc:
        raise _bad(field, f"{label}: {path} is not valid JSON ({str(exc)[:200]})") from None
    try:
        return AuditRequest.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError.from_validation(
            exc, "audit request", prefix=f"cases[{index}].request.", context=f"{label}: {path}: "
        ) from None


def inline_suite(suite: GateSuite, cases: list[ResolvedCase]) -> GateSuite:
    """The suite with every case inline and its thresholds merged (what the CLI sends to ``POST /v1/gates``)."""
    return GateSuite(
        name=suite.name,
        cases=[SuiteCase(name=c.name, request=c.request, thresholds=c.request.thresholds) for c in cases],
    )
