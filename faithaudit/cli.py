"""faithaudit command line.

    faithaudit audit CASE.json [--json OUT|-] [--html OUT]    audit one case in this process
    faithaudit render REPORT.json --html OUT                  re-render a saved report as an HTML page
    faithaudit corpus add NAME FILE.jsonl [--tenant T]        embed documents into a corpus (retriever replay)
    faithaudit gate SUITE [--server URL --api-key KEY]        CI gate: exit 0 pass, 1 fail, 2 bad suite, 3 not run
    faithaudit serve [--host H] [--port P] [--workers N]     the HTTP API (never imports torch)
    faithaudit worker                                         a Celery worker on the broker
    faithaudit keys create --tenant T | list | revoke ID      API keys (stored hashed)
    faithaudit db upgrade                                     apply the store's migrations
    faithaudit models                                         built-in model names
    faithaudit trace tau-bench RUNS.jsonl --run ID [...]      a tau-bench run as an agent audit request

Exit codes: 0 done (an audit's gate verdict does not change it), 2 bad input or usage (the message names the
field), 1 failure.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Audit what an LLM answer relies on.")
err = Console(stderr=True)

EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """A problem with what the user gave us: printed without a traceback, exit 2."""


def _with_overrides(data: dict, overrides: dict) -> dict:
    """``data`` with each dotted path in ``overrides`` set (``audit.seed`` -> data["audit"]["seed"])."""
    out = json.loads(json.dumps(data))
    for path, value in overrides.items():
        node = out
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise BadInput(f"{key}: must be an object to take --{leaf.replace('_', '-')}")
        node[leaf] = value
    return out


def load_request(path: Path, *, overrides: dict | None = None):
    """Read and validate a request file (with command-line ``overrides``, dotted paths); every problem becomes
    ``BadInput`` naming the field."""
    from pydantic import ValidationError

    from faithaudit.api_schemas import AuditRequest, validation_fields
    from faithaudit.api_schemas.edge import EdgeError, check_edge

    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not UTF-8 text ({exc.reason})") from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    except (ValueError, RecursionError) as exc:
        raise BadInput(f"{path}: not valid JSON ({str(exc)[:200]})") from exc
    try:
        check_edge(data)
    except EdgeError as exc:
        raise BadInput(f"{path}: invalid audit request\n  {exc.path}: {exc.msg}") from exc
    if overrides and isinstance(data, dict):
        data = _with_overrides(data, overrides)
    try:
        return AuditRequest.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {field}: {msg}" for field, msg in validation_fields(exc)]
        raise BadInput(f"{path}: invalid audit request\n" + "\n".join(lines)) from exc


def _print_version(value: bool) -> None:
    if value:
        from faithaudit import __version__

        typer.echo(f"faithaudit {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the faithaudit version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    """Audit what an LLM answer relies on."""


@app.command()
def audit(
    case: Annotated[Path, typer.Argument(help="An audit request as JSON (see examples/).")],
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the report JSON to this file, or '-' for stdout.")
    ] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write an HTML report page here.")] = None,
    tenant: Annotated[str, typer.Option("--tenant", help="Whose corpora a retriever pipeline reads.")] = "local",
    methods: Annotated[
        str | None, typer.Option("--methods", help="Comma-separated audit.methods (replaces the request's).")
    ] = None,
    num_ablations: Annotated[int | None, typer.Option("--num-ablations", help="audit.num_ablations.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="audit.seed.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="model.name: a built-in name or a local path.")] = None,
    fail_on_gate: Annotated[
        bool,
        typer.Option("--fail-on-gate", help="Exit as `faithaudit gate` does: 1 a threshold failed, 3 not evaluated."),
    ] = False,
) -> None:
    """Audit one case and print the reliance table."""
    from faithaudit.errors import InvalidRequestError

    overrides = _overrides(methods=methods, num_ablations=num_ablations, seed=seed, model=model)
    _compute_or_exit()
    try:
        request = load_request(case, overrides=overrides)
        report = _run(request, tenant=tenant)
    except BadInput as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except InvalidRequestError as exc:
        err.print(f"[red]error:[/red] {case}: {exc.message}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None

    text = report.model_dump_json(indent=2)
    if json_out == "-":
        sys.stdout.write(text + "\n")
        print_report(report, console=err)
    else:
        print_report(report, console=Console())
        if json_out:
            _write(Path(json_out), text)
    if html_out:
        from faithaudit.pages.report import render_report_html

        _write(html_out, render_report_html(report))
    if fail_on_gate:
        raise typer.Exit(gate_exit_code(report))


def _overrides(**flags) -> dict:
    """Command-line flags as request fields (dotted paths) to set over the file's."""
    paths = {
        "methods": "audit.methods",
        "num_ablations": "audit.num_ablations",
        "seed": "audit.seed",
        "model": "model.name",
    }
    out = {paths[k]: v for k, v in flags.items() if v is not None}
    if "audit.methods" in out:
        out["audit.methods"] = [m.strip() for m in out["audit.methods"].split(",") if m.strip()]
    return out


def gate_exit_code(report) -> int:
    """0 passed; 1 a measured figure broke a threshold; 3 a threshold's figure was not measured."""
    from faithaudit.gating.verdict import EXIT_FAILED, EXIT_NOT_EVALUATED, EXIT_PASSED

    if report.gate.passed:
        return EXIT_PASSED
    if any(f.measured is not None for f in report.gate.failures):
        return EXIT_FAILED
    return EXIT_NOT_EVALUATED


def _run(request, *, tenant: str = "local"):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from faithaudit.audits.model.registry import load_model
    from faithaudit.audits.run import audit_request
    from faithaudit.config import get_settings
    from faithaudit.retrieval.replay import CorpusLibrary
    from faithaudit.tools import registry_for

    settings = get_settings()
    name = request.model.name or settings.default_model
    _quiet_loader_bars()
    with err.status(f"loading {name}", spinner="dots"):
        model = load_model(name, settings)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task("auditing", total=1.0)
        plain = PlainProgress(err) if not err.is_terminal else None

        def progress(fraction: float, stage: str) -> None:
            bar.update(task, completed=fraction, description=stage)
            if plain is not None:
                plain(fraction, stage)

        return audit_request(
            request,
            model,
            tenant=tenant,
            corpora=CorpusLibrary(settings.data_dir),
            progress=progress,
            max_sources=settings.max_sources,
            max_source_chars=settings.max_source_chars,
            tools=registry_for,
        )


def _quiet_loader_bars() -> None:
    """The model loader's own tqdm bars ("Loading weights") would interleave with ours."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


class PlainProgress:
    """Progress as plain lines on stderr when it is not a terminal (CI logs): one per stage, and every 10%."""

    def __init__(self, console) -> None:
        self.console, self.stage, self.step = console, None, -1

    def __call__(self, fraction: float, stage: str) -> None:
        step = int(fraction * 10)
        if stage != self.stage or step > self.step:
            self.stage, self.step = stage, step
            self.console.print(f"progress {fraction:4.0%} {stage}", highlight=False, soft_wrap=True)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    err.print(f"wrote {path}", highlight=False)


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _interval(s) -> str:
    return "—" if s.reliance_interval is None else f"[{s.reliance_interval[0]:+.2f}, {s.reliance_interval[1]:+.2f}]"


def print_report(report, *, console: Console) -> None:
    """A readable table (source, attention share, reliance with its interval and z, label), why each source got
    its label, the regenerated answers and the summary with its noise floor."""
    m = report.summary
    table = Table(
        title=f"Reliance of: {report.response[:80]}",
        title_justify="left",
        caption="reliance and its interval (over document orders, or +- the noise floor) in nats; z against the "
        "placebos; surrogate: "
        "ContextCite's weight in nats of log-odds of the whole response",
        caption_justify="left",
    )
    wide, medium = console.width >= 140, console.width >= 100
    columns = [
        ("source", "left", 6),
        ("attention", "right", 9),
        ("reliance", "right", 8),
        ("interval", "right", 16),
        *([("z", "right", 5), ("surrogate (log-odds)", "right", 9)] if medium else []),
        ("flip", "center", 4),
        ("label", "left", 12),
    ]
    if wide:
        columns.append(("text", "left", 10))
    for col, justify, min_width in columns:
        table.add_column(
            col,
            justify=justify,
            no_wrap=True,
            overflow="ellipsis",
            min_width=min_width,
            max_width=40 if col == "text" else None,
        )
    for s in report.sources:
        row = [
            s.id + (" [cited]" if s.cited else ""),
            _fmt(s.attention, ".1%"),
            _fmt(s.reliance, "+.2f"),
            _interval(s),
            *([_fmt(s.reliance_z, "+.1f"), _fmt(s.surrogate_weight, "+.2f")] if medium else []),
            "—" if s.answer_changed is None else ("yes" if s.answer_changed else "no"),
            s.label or "—",
        ]
        table.add_row(*row, *([s.text_preview] if wide else []))
    console.print(table)
    floor = "—" if m.noise_floor_nats is None else f"{m.noise_floor_nats:.2f} nats ({len(m.placebo_reliance)} placebos)"
    console.print(
        f"noise floor {floor} · order top-1 stability {_fmt(m.order_top1_stability, '.2f')} · context reliance "
        f"{_fmt(m.context_reliance, '.2f')} nats · parametric {m.parametric} · context token share "
        f"{_fmt(m.context_token_share, '.2f')} · surrogate LDS {_fmt(m.surrogate_lds, '.2f')}"
        f"{'' if m.surrogate_lds_method is None else ' (' + m.surrogate_lds_method.replace('_', '-') + ')'} · "
        f"attention~reliance spearman {_fmt(m.attention_reliance_spearman, '.2f')} · top-1 agree {m.top1_agreement}",
        highlight=False,
    )
    for s in report.sources:
        if s.label_reason:
            console.print(f"  {s.id}: {s.label} — {s.label_reason}", highlight=False)
    _print_answers(console, report)
    _print_stability(console, report)
    _print_mechanism(console, report)
    if report.agent is not None:
        _print_agent(console, report)
    for line in report.limitations:
        console.print(f"[yellow]limitation: {line}[/yellow]", highlight=False)
    for flag in m.flags:
        console.print(f"  flag: {flag}", highlight=False)
    verdict = "[green]passed[/green]" if report.gate.passed else "[red]failed[/red]"
    console.print(f"gate {verdict}" + "".join(f"\n  {f.message}" for f in report.gate.failures))
    _print_retrieval(console, report)
    console.print(
        f"cost: {report.cost.forward_passes} forward passes, {report.cost.tokens_processed} tokens, "
        f"{report.cost.seconds:.1f} s · model {report.model.name}",
        highlight=False,
    )


def _print_answers(console, report) -> None:
    """The audited answer beside the regenerated ones, and whether flips were allowed to count."""
    m = report.summary
    regenerated = [s for s in report.sources if s.answer_without is not None]
    if m.answer_full is None and not regenerated:
        return
    counted = "counted" if m.flips_counted else "ignored (unstable greedy answer)"
    console.print(
        f"answers (span {m.answer_span!r}, greedy margin {_fmt(m.greedy_margin_nats, '.2f')} nats, placebo flip "
        f"rate {_fmt(m.placebo_flip_rate, '.0%')}; flips {counted}):",
        highlight=False,
    )
    console.print(f"  audited: {report.response}", highlight=False)
    if m.answer_full is not None:
        console.print(f"  full context, greedy: {m.answer_full}", highlight=False)
    for s in regenerated:
        console.print(f"  without {s.id}: {s.answer_without}", highlight=False)


def _print_stability(console, report) -> None:
    st = report.stability
    if st is None:
        return
    temperature = "" if st.sampling_temperature is None else f" at T={st.sampling_temperature:g}"
    console.print(
        f"stability over {len(st.variants)} variants ({st.sampled_responses} sampled{temperature}, "
        f"{st.paraphrases} paraphrases): top attention / top reliance / label agreement",
        highlight=False,
    )
    for r in st.sources:
        mark = "" if r.stable else "  [yellow]unstable[/yellow]"
        console.print(
            f"  {r.id}: {r.attention_top1_rate:.0%} / {r.reliance_top1_rate:.0%} / {r.label_agreement:.0%}{mark}",
            highlight=False,
        )


def _print_mechanism(console, report) -> None:
    for m in report.mechanism or []:
        head = (
            f"mechanism {m.source} ({m.corruption.replace('_', ' ')}): log p clean {m.clean_logprob:.2f}, corrupted "
            f"{m.corrupted_logprob:.2f}, without it {_fmt(m.loo_logprob, '.2f')} nats · {m.forward_passes} passes"
        )
        console.print(head, highlight=False)
        console.print(f"  {m.reading or m.skipped_reason}", highlight=False)
        if m.all_attention_after_restore is not None:
            console.print(
                f"  self-checks: all attention after restored {m.all_attention_after_restore:.3f} (1 expected), "
                f"unchanged run {m.unchanged_run_delta_nats:+.5f} nats (0 expected)",
                highlight=False,
            )


def _print_retrieval(console, report) -> None:
    if report.retrieval is None:
        return
    r, rs = report.retrieval, report.retrieval_sensitivity
    hits = ", ".join(f"{d.rank}. {d.id} ({d.score:.3f})" for d in r.documents)
    console.print(f"retrieved from {r.corpus} (k={r.k}): {hits}", highlight=False)
    if rs is not None:
        parts = [f"{v.name} {v.delta:+.2f}" for v in [rs.depth_k_minus_1, rs.depth_k_plus_1, *rs.replacements] if v]
        console.print("retrieval sensitivity (nats vs top-k): " + " · ".join(parts), highlight=False)


def _print_agent(console, report) -> None:
    agent = report.agent
    console.print(f"reading: {agent.reading}", highlight=False)
    for s in report.sources:
        action = s.next_action_without
        took = "—" if action is None else (action.tool if action.kind == "tool_call" else action.kind)
        console.print(
            f"  {s.id} ({s.tool}): unavailable {_fmt(s.reliance_unavailable, '+.2f')} · counterfactual "
            f"{_fmt(s.reliance_counterfactual, '+.2f')} · next-action drop {_fmt(s.next_action_logprob_drop, '+.2f')}"
            f" · without it the model takes: {took}",
            highlight=False,
        )
    if agent.trim is not None:
        t = agent.trim
        console.print(
            f"trimmed to {t.tokens_after} prompt tokens (from {t.tokens_before}): dropped "
            f"{len(t.dropped_turns)} turns and steps {', '.join(t.dropped_steps) or 'none'}",
            highlight=False,
        )


@app.command()
def render(
    report_path: Annotated[Path, typer.Argument(metavar="REPORT.json", help="A saved report (`audit --json`).")],
    html_out: Annotated[Path, typer.Option("--html", help="Write the HTML report page here ('-' for stdout).")],
    title: Annotated[str | None, typer.Option("--title", help="The page title.")] = None,
) -> None:
    """Re-render a saved report JSON as the HTML report page (no model is loaded)."""
    from pydantic import ValidationError

    from faithaudit.api_schemas import AuditReport, validation_fields
    from faithaudit.pages.report import render_report_html

    try:
        report = AuditReport.model_validate_json(report_path.read_bytes())
    except OSError as exc:
        err.print(f"[red]error:[/red] {report_path}: {exc.strerror or exc}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except ValidationError as exc:
        fields = "; ".join(f"{path}: {message}" for path, message in validation_fields(exc)[:5])
        err.print(f"[red]error:[/red] {report_path} is not a faithaudit report: {fields}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    page = render_report_html(report, title=title)
    if str(html_out) == "-":
        sys.stdout.write(page)
    else:
        _write(html_out, page)


@app.command("models")
def models() -> None:
    """List the built-in model names."""
    from faithaudit.audits.model.registry import list_models

    for name in list_models():
        typer.echo(name)


corpus_app = typer.Typer(no_args_is_help=True, help="Corpora for retriever replay (pipeline.kind = retriever).")
app.add_typer(corpus_app, name="corpus")


@corpus_app.command("add")
def corpus_add(
    name: Annotated[str, typer.Argument(help="Corpus name (letters, digits, '_.-'); created if new.")],
    file: Annotated[Path, typer.Argument(help='JSON Lines: {"id"?, "text", "metadata"?} per line.')],
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant that owns the corpus.")] = "local",
) -> None:
    """Embed the documents of FILE into corpus NAME (all-MiniLM-L6-v2, FAISS) under the data dir."""
    from faithaudit.config import get_settings
    from faithaudit.errors import FaithauditError, InvalidRequestError, NotFoundError
    from faithaudit.retrieval.corpus import add_documents, read_jsonl

    settings = get_settings()
    try:
        docs = read_jsonl(file)
        with err.status(f"embedding {len(docs)} document(s)", spinner="dots"):
            count = add_documents(settings.data_dir, tenant, name, docs)
    except (InvalidRequestError, NotFoundError) as exc:
        err.print(f"[red]error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except FaithauditError as exc:
        err.print(f"[red]error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from None
    try:
        _store().register_corpus(tenant, name, num_documents=count)
    except Exception as exc:  # noqa: BLE001 - the index is written; the service learns of it on its next add
        err.print(f"[yellow]warning: corpus written but not registered in the store: {exc}[/yellow]")
    typer.echo(f"corpus {name} (tenant {tenant}): {count} document(s)")


@app.command()
def gate(
    suite: Annotated[Path, typer.Argument(help="A suite file (YAML or JSON): thresholds and cases.")],
    server: Annotated[str | None, typer.Option("--server", help="Run on this faithaudit service.")] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="FAITHAUDIT_API_KEY", help="API key for --server.")
    ] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML (one testcase per case).")] = None,
    json_out: Annotated[str | None, typer.Option("--json", help="Write the verdict JSON here ('-': stdout).")] = None,
    tenant: Annotated[str, typer.Option("--tenant", help="Corpora owner for in-process runs.")] = "local",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server's verdict.")] = 3600.0,
) -> None:
    """Audit every case of SUITE against its thresholds: exit 0 all pass, 1 a case fails, 2 bad suite, 3 not run."""
    from faithaudit.errors import InvalidRequestError
    from faithaudit.gating.suite import load_suite, resolve_cases
    from faithaudit.gating.verdict import EXIT_BAD_SUITE, EXIT_NOT_EVALUATED, exit_code, junit_xml, verdict_line

    try:
        parsed = load_suite(suite)
        cases = resolve_cases(parsed, base_dir=suite.resolve().parent)
        if server is None:
            _check_local_corpora(cases, tenant)
    except InvalidRequestError as exc:
        err.print(f"[red]bad suite:[/red] {exc.message}", highlight=False)
        raise typer.Exit(EXIT_BAD_SUITE) from None
    name = parsed.name or suite.stem
    if server is None:
        _compute_or_exit()
        verdict = _gate_local(cases, suite_name=name, tenant=tenant)
    else:
        from faithaudit.client import ApiError, Client, ClientError
        from faithaudit.gating.suite import inline_suite

        try:
            with Client(server, api_key, retries=2) as client:
                accepted = client.submit_gate(inline_suite(parsed, cases).model_copy(update={"name": name}))
                err.print(f"gate job {accepted.id} on {server}", highlight=False)
                status = client.wait_gate(accepted.id, timeout=timeout)
        except ApiError as exc:
            bad = exc.status in (401, 403, 413, 422)
            err.print(f"[red]{'bad suite' if bad else 'error'}:[/red] {exc.message}", highlight=False)
            for f in exc.api_fields:
                err.print(f"  {f.get('path')}: {f.get('msg')}", highlight=False)
            raise typer.Exit(EXIT_BAD_SUITE if bad else EXIT_NOT_EVALUATED) from None
        except ClientError as exc:
            err.print(f"[red]could not evaluate:[/red] {exc.message}", highlight=False)
            raise typer.Exit(EXIT_NOT_EVALUATED) from None
        if status.verdict is None:
            err.print(f"[red]could not evaluate:[/red] gate job {status.status}: {status.error}", highlight=False)
            raise typer.Exit(EXIT_NOT_EVALUATED)
        verdict = status.verdict
    text = verdict.model_dump_json(indent=2)
    out = err if json_out == "-" else Console()
    print_verdict(verdict, console=out)
    if json_out == "-":
        sys.stdout.write(text + "\n")
    elif json_out:
        _write(Path(json_out), text)
    if junit:
        _write(junit, junit_xml(verdict))
    out.print(verdict_line(verdict), highlight=False)
    raise typer.Exit(exit_code(verdict))


def _check_local_corpora(cases, tenant: str) -> None:
    from faithaudit.config import get_settings
    from faithaudit.gating.suite import check_corpora
    from faithaudit.retrieval.corpus import corpus_exists

    data_dir = get_settings().data_dir
    check_corpora(cases, lambda name: corpus_exists(data_dir, tenant, name))


def _gate_local(cases, *, suite_name: str, tenant: str):
    from faithaudit.audits.model.registry import load_model
    from faithaudit.config import get_settings
    from faithaudit.gating.run import run_cases

    settings = get_settings()

    def load(name: str):
        with err.status(f"loading {name}", spinner="dots"):
            return load_model(name, settings)

    return run_cases(
        cases,
        load_model=load,
        default_model=settings.default_model,
        data_dir=settings.data_dir,
        tenant=tenant,
        suite=suite_name,
        max_sources=settings.max_sources,
        max_source_chars=settings.max_source_chars,
        on_case=lambda i, name: err.print(f"[{i + 1}/{len(cases)}] auditing {name}", highlight=False),
    )


def print_verdict(verdict, *, console: Console) -> None:
    """One row per case: status, the thresholds in force against the measured figures."""
    from faithaudit.gating.verdict import failure_message

    table = Table(title=f"Gate: {verdict.suite or 'suite'}", title_justify="left")
    for col in ("case", "status", "thresholds (limit / measured)", "failures"):
        table.add_column(col, overflow="fold")
    style = {"passed": "green", "failed": "red", "error": "yellow"}
    measured_key = {
        "min_context_reliance": "context_reliance",
        "min_context_token_share": "context_token_share",
        "max_noise_floor_nats": "noise_floor_nats",
        "min_citation_precision": "citation_precision",
        "max_attended_not_relied": "attended_not_relied",
    }
    for case in verdict.cases:
        figures = []
        for key, limit in case.thresholds.items():
            value = case.measured.get(measured_key.get(key, key))
            figures.append(f"{key} {limit:g} / {_fmt(value, '.3g')}")
        detail = case.error if case.status == "error" else failure_message(case) or "—"
        table.add_row(case.name, f"[{style[case.status]}]{case.status}[/]", "\n".join(figures), detail)
    console.print(table)


keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys.")
db_app = typer.Typer(no_args_is_help=True, help="The audit store's schema.")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
trace_app = typer.Typer(no_args_is_help=True, help="Turn recorded agent traces into audit requests.")
app.add_typer(trace_app, name="trace")


import_app = typer.Typer(no_args_is_help=True, help="Turn traces and datasets from other tools into audit requests.")
app.add_typer(import_app, name="import")


def _read_json_or_lines(path: Path):
    """A JSON document, or JSON Lines (one document a line) as a list."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not UTF-8 text") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as first:  # JSONDecodeError, over-long integers, deep nesting
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            raise BadInput(f"{path}: not valid JSON: {str(first)[:200]}") from None
        out = []
        for n, line in enumerate(lines, start=1):
            try:
                out.append(json.loads(line))
            except (ValueError, RecursionError) as exc:
                raise BadInput(f"{path}: line {n}: not valid JSON: {str(exc)[:200]}") from None
        return out


@contextmanager
def _exit_2_on_bad(path: Path):
    """Unreadable files, bad input and invalid requests: the message (naming the file and the field), exit 2."""
    from faithaudit.errors import InvalidRequestError

    try:
        yield
    except OSError as exc:
        err.print(f"[red]error:[/red] {path}: {exc.strerror or exc}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except BadInput as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except InvalidRequestError as exc:
        err.print(f"[red]error:[/red] {path}: {exc.message}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _emit(data, out: Path | None) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if out is None or str(out) == "-":
        sys.stdout.write(text)
    else:
        _write(out, text)


@import_app.command("otlp")
def import_otlp(
    path: Annotated[Path, typer.Argument(metavar="FILE.json", help="OTLP/JSON traces (a document or JSON Lines).")],
    trace: Annotated[
        str | None, typer.Option("--trace", help="The trace id (hex) when the file holds several.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the request here (default: stdout).")] = None,
) -> None:
    """One OpenInference / OpenTelemetry GenAI trace as an audit request (rag, or agent when tools were called)."""
    from faithaudit.importers.trace_request import otlp_request
    from faithaudit.importers.validate import checked_request

    with _exit_2_on_bad(path):
        body = otlp_request(_read_json_or_lines(path), trace_id=trace)
        checked_request(body, where=f"trace {body['metadata']['trace_id']}")
    for note in body["metadata"]["notes"]:
        err.print(f"note: {note}", highlight=False)
    _emit(body, out)


def _import_dataset(path: Path, fmt: str, row: int | None, out: Path | None) -> None:
    from faithaudit.importers.datasets import dataset_requests
    from faithaudit.importers.validate import checked_request

    with _exit_2_on_bad(path):
        rows = dataset_requests(_read_json_or_lines(path), fmt, name=path.name)
        if row is not None and not 0 <= row < len(rows):
            raise BadInput(f"--row {row}: the file has {len(rows)} rows (0 to {len(rows) - 1})")
        chosen = rows if row is None else [rows[row]]
        for name, body in chosen:
            checked_request(body, where=name)
    if row is not None:
        _emit(chosen[0][1], out)
        return
    lines = "".join(json.dumps(body, ensure_ascii=False) + "\n" for _, body in chosen)
    if out is None or str(out) == "-":
        sys.stdout.write(lines)
    else:
        _write(out, lines)


_ROW = typer.Option("--row", help="Convert only this row (0-based) to one request; default: every row, JSON Lines.")
_OUT = typer.Option("--out", help="Write here (default: stdout).")


@import_app.command("ragas")
def import_ragas(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="RAGAS single-turn samples: JSON Lines or JSON.")],
    row: Annotated[int | None, _ROW] = None,
    out: Annotated[Path | None, _OUT] = None,
) -> None:
    """RAGAS samples (user_input, retrieved_contexts, response) as rag audit requests."""
    _import_dataset(path, "ragas", row, out)


@import_app.command("deepeval")
def import_deepeval(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="DeepEval test cases: a JSON list or JSON Lines.")],
    row: Annotated[int | None, _ROW] = None,
    out: Annotated[Path | None, _OUT] = None,
) -> None:
    """DeepEval test cases (input, actual_output, retrieval_context, tools_called) as rag or agent requests."""
    _import_dataset(path, "deepeval", row, out)


export_app = typer.Typer(no_args_is_help=True, help="Write audit results back to the tools the traces came from.")
app.add_typer(export_app, name="export")


@export_app.command("phoenix")
def export_phoenix(
    audit: Annotated[str, typer.Argument(metavar="AUDIT_ID|REPORT.json", help="A saved report, or an audit id.")],
    out: Annotated[Path, typer.Option("--out", help="Write the annotations and events here.")],
    server: Annotated[str | None, typer.Option("--server", help="Fetch the audit from this service.")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="FAITHAUDIT_API_KEY")] = None,
    phoenix_url: Annotated[
        str | None, typer.Option("--phoenix-url", help="Also POST the annotations to this Phoenix server.")
    ] = None,
) -> None:
    """Reliance per document and the audit's summary as Phoenix annotations (+ OTel gen_ai.evaluation.result)."""
    import os
    import time

    from faithaudit.api_schemas import AuditReport
    from faithaudit.errors import FaithauditError
    from faithaudit.exporters.phoenix import export_bundle, post_to_phoenix

    try:
        if Path(audit).is_file():
            report, audit_id = AuditReport.model_validate_json(Path(audit).read_bytes()), None
        elif server is None:
            raise BadInput(f"{audit}: not a report file; give --server to fetch an audit by id")
        else:
            from faithaudit.client import Client

            with Client(server, api_key) as client:
                report, audit_id = client.report(audit), audit
        bundle = export_bundle(report, time_unix_nano=time.time_ns(), audit_id=audit_id)
    except (BadInput, FaithauditError, ValueError, OSError) as exc:
        err.print(f"[red]error:[/red] {getattr(exc, 'message', exc)}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    _write(out, json.dumps(bundle, indent=2, ensure_ascii=False) + "\n")
    counts = {k: len(bundle[k]["data"]) for k in ("span_annotations", "document_annotations")}
    err.print(
        f"{counts['span_annotations']} span and {counts['document_annotations']} document annotations", highlight=False
    )
    if phoenix_url:
        import httpx

        try:
            statuses = post_to_phoenix(bundle, phoenix_url, api_key=os.environ.get("PHOENIX_API_KEY"))
        except httpx.HTTPError as exc:
            err.print(f"[red]error:[/red] could not post to {phoenix_url}: {exc}", highlight=False)
            raise typer.Exit(1) from None
        err.print(f"posted to {phoenix_url}: {statuses}", highlight=False)
        if any(code >= 400 for code in statuses.values()):
            raise typer.Exit(1)


@trace_app.command("tau-bench")
def trace_tau_bench(
    runs: Annotated[Path, typer.Argument(help="A JSONL file of tau-bench runs (messages + system_prompt_ref).")],
    run: Annotated[str, typer.Option("--run", help="The run's id.")],
    answer: Annotated[int, typer.Option(help="Which assistant answer after a tool call to audit (-1: last).")] = -1,
    system_prompt: Annotated[
        Path | None, typer.Option(help="The domain's system prompt (default: the run's system_prompt_ref).")
    ] = None,
    max_prompt_tokens: Annotated[int | None, typer.Option(help="Trim the trace to this many tokens.")] = None,
    keep_last_turns: Annotated[int, typer.Option(help="Turns at the end that trimming keeps.")] = 4,
    audit_last: Annotated[int | None, typer.Option(help="Audit only the last K non-empty tool outputs.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the request here (default: stdout).")] = None,
) -> None:
    """Convert one tau-bench run into an agent audit request (JSON)."""
    from faithaudit.api_schemas import AuditRequest
    from faithaudit.errors import FaithauditError
    from faithaudit.tools.traces import iter_jsonl, tau_bench_request

    try:
        record = next((r for r in iter_jsonl(runs) if r.get("id") == run), None)
        if record is None:
            raise BadInput(f"{runs}: no run with id {run!r}")
        prompt_path = system_prompt or (
            runs.parent / record["system_prompt_ref"] if record.get("system_prompt_ref") else None
        )
        prompt = prompt_path.read_text(encoding="utf-8") if prompt_path else None
        data = tau_bench_request(
            record,
            system_prompt=prompt,
            answer=answer,
            max_prompt_tokens=max_prompt_tokens,
            keep_last_turns=keep_last_turns,
        )
        if audit_last is not None:
            trace = AuditRequest.model_validate(data).pipeline.trace(query="")
            data["pipeline"]["audit_steps"] = trace.auditable()[-audit_last:]
        AuditRequest.model_validate(data)
    except (OSError, ValueError, FaithauditError, BadInput) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        _write(out, text)


def _store():
    """Open the store and apply its migrations (every command that opens it does)."""
    from faithaudit.config import get_settings
    from faithaudit.store import Store

    store = Store.from_settings(get_settings())
    store.upgrade()
    return store


@keys_app.command("create")
def keys_create(tenant: Annotated[str, typer.Option("--tenant", help="The tenant the key acts for.")]) -> None:
    """Print a new API key as the last line. It is shown once: only its hash is stored."""
    key, info = _store().create_api_key(tenant)
    err.print(f"created key {info.id} (prefix {info.prefix}) for tenant {info.tenant}", highlight=False)
    typer.echo(key)


@keys_app.command("list")
def keys_list(tenant: Annotated[str | None, typer.Option("--tenant")] = None) -> None:
    """List keys (id, tenant, prefix, created, revoked); never the keys themselves."""
    for k in _store().list_api_keys(tenant):
        revoked = k.revoked_at.isoformat() if k.revoked_at else "-"
        typer.echo(f"{k.id}\t{k.tenant}\t{k.prefix}\t{k.created_at.isoformat()}\trevoked={revoked}")


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="A key id or prefix from `keys list`.")]) -> None:
    if not _store().revoke_api_key(key):
        err.print(f"[red]error:[/red] no key {key}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT)
    typer.echo(f"revoked {key}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the store's migrations to FAITHAUDIT_DATABASE_URL (SQLite under the data dir by default)."""
    _store()
    typer.echo("database is up to date")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="No API keys: for a local demo only.")] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="API processes sharing the port (uvicorn's supervisor restarts one that dies). More than 1 needs "
            "PostgreSQL (FAITHAUDIT_DATABASE_URL).",
        ),
    ] = 1,
) -> None:
    """Run the HTTP API. Audits are run by `faithaudit worker` processes."""
    from faithaudit.config import get_settings

    settings = get_settings()
    if workers > 1 and _url_backend(settings.resolved_database_url()) != "postgresql":
        err.print(
            f"[red]error:[/red] --workers {workers}: several API processes need PostgreSQL "
            "(FAITHAUDIT_DATABASE_URL=postgresql+psycopg://...); on SQLite every write waits on one file lock, across "
            "processes by sleeping and retrying, so more processes only lengthen the wait. Use --workers 1 on SQLite.",
            highlight=False,
        )
        raise typer.Exit(EXIT_BAD_INPUT)
    if settings.public_url is None:  # links name the address served here, never a request's Host header
        local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        settings = settings.model_copy(update={"public_url": f"http://{local}:{port}"})
    store = _store()  # the migrations, applied once here before any API process starts
    if no_auth:
        err.print("[yellow]warning: --no-auth: every request acts as tenant 'local'[/yellow]")
    if workers == 1:
        import uvicorn

        from faithaudit.service.app import create_app

        app = create_app(settings, store=store, auth_enabled=not no_auth, warm_up=True, freeze_gc=True)
        uvicorn.run(app, host=host, port=port, workers=1, log_level="info")  # not WEB_CONCURRENCY: --workers
        return
    store.dispose()
    _serve_processes(host=host, port=port, workers=workers, auth_enabled=not no_auth, public_url=settings.public_url)


def _url_backend(url: str) -> str:
    """``sqlite`` or ``postgresql`` (``postgres`` too) from a database URL's scheme, without its driver."""
    scheme = url.partition(":")[0].partition("+")[0].lower()
    return "postgresql" if scheme == "postgres" else scheme


def _serve_processes(*, host: str, port: int, workers: int, auth_enabled: bool, public_url: str | None) -> None:
    """``workers`` API processes on one socket, under uvicorn's supervisor. Each builds its own app, store and
    reaper from the environment (``service.app.create_app_from_env``); what this command decided beyond the
    settings (``--no-auth``, the public URL) travels in ``SERVE_OPTIONS_ENV``. A process that fails to start stops
    them all, and this command exits 1."""
    import os

    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from faithaudit.service.app import ServeOptions

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        err.print(
            "[yellow]warning: PROMETHEUS_MULTIPROC_DIR is unset: /metrics shows the counters of whichever API "
            "process answers the scrape[/yellow]"
        )
    os.environ.update(ServeOptions(auth_enabled=auth_enabled, public_url=public_url).to_env())
    config = uvicorn.Config(
        "faithaudit.service.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
    )
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        err.print("[red]error:[/red] an API process failed to start (its log is above)", highlight=False)
        raise typer.Exit(1)


@app.command()
def worker(
    name: Annotated[str | None, typer.Option(help="Celery node name.")] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve this worker's Prometheus metrics on this port (its own container).")
    ] = None,
    queues: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated audit queues to take (default: FAITHAUDIT_QUEUE_NAME); a GPU worker takes its "
            "model's queue from FAITHAUDIT_MODEL_QUEUES. Webhooks are always taken too."
        ),
    ] = None,
) -> None:
    """Run a Celery worker (one audit at a time, the model loaded once per process)."""
    import os
    import socket

    from faithaudit.config import get_settings
    from faithaudit.queue import callback_queue
    from faithaudit.workers.celery_app import get_celery

    _compute_or_exit()
    _store()
    if metrics_port is not None:
        from faithaudit.telemetry import serve_worker_metrics

        serve_worker_metrics(metrics_port)
    settings = get_settings()
    taken = _worker_queues(queues, settings)
    node = name or f"faithaudit-{socket.gethostname()}-{os.getpid()}"
    get_celery().worker_main(
        [
            "worker",
            "--pool=solo",
            f"--queues={','.join([*taken, callback_queue(settings.queue_name)])}",
            f"--hostname={node}@%h",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


def _worker_queues(option: str | None, settings) -> list[str]:
    """The audit queues a worker takes: ``--queues`` or the default queue; an unknown queue exits 2."""
    if option is None:
        return [settings.queue_name]
    taken = [q.strip() for q in option.split(",") if q.strip()]
    known = {settings.queue_name, *settings.model_queues.values()}
    unknown = [q for q in taken if q not in known]
    if not taken or unknown:
        err.print(
            f"[red]error:[/red] --queues {option!r}: use {sorted(known)} (FAITHAUDIT_QUEUE_NAME, "
            "FAITHAUDIT_MODEL_QUEUES)",
            highlight=False,
        )
        raise SystemExit(EXIT_BAD_INPUT)
    return taken


def _settings_or_exit() -> None:
    """A bad FAITHAUDIT_* variable stops every command at start-up (exit 2), naming the variable."""
    from pydantic import ValidationError

    from faithaudit.config import get_settings

    try:
        get_settings()
    except ValidationError as exc:
        for e in exc.errors():
            msg = str(e["msg"]).removeprefix("Value error, ")
            where = f"FAITHAUDIT_{str(e['loc'][0]).upper()}: " if e["loc"] else ""
            err.print(f"[red]error:[/red] invalid setting: {where}{msg}", highlight=False)
        raise SystemExit(EXIT_BAD_INPUT) from None


def _compute_or_exit() -> None:
    """A device or dtype this machine cannot honour stops a command that runs the model (exit 2), naming the
    variable (FAITHAUDIT_DEVICE=cuda where torch sees no GPU)."""
    from faithaudit.audits.model.device import Compute, DeviceSettingError, check_device
    from faithaudit.config import get_settings

    try:
        check_device(Compute.from_settings(get_settings()))
    except DeviceSettingError as exc:
        err.print(f"[red]error:[/red] invalid setting: {exc.message}", highlight=False)
        raise SystemExit(EXIT_BAD_INPUT) from None


def main() -> None:
    _settings_or_exit()
    app()


if __name__ == "__main__":
    main()
