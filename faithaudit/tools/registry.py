"""Tools an agent replay can call: an explicit name -> tool registry, with deterministic built-ins.

A tool takes its JSON arguments and returns the output text, or raises ``Unreplayable`` when it cannot answer
(a recorded tool asked with arguments the trace never saw). ``UnknownToolError`` lists the names it knows.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from faithaudit.errors import FaithauditError

ToolFn = Callable[[Mapping[str, Any]], str]


class Unreplayable(Exception):
    """The tool cannot answer these arguments (a recorded tool asked something the trace never saw)."""


class UnknownToolError(FaithauditError):
    code = "unknown_tool"
    http_status = 422

    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown tool {name!r}; known tools: {', '.join(sorted(known)) or 'none'}")
        self.name = name


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    run: ToolFn
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ToolRegistry:
    tools: dict[str, Tool] = field(default_factory=dict)

    def register(self, tool: Tool) -> None:
        self.tools[tool.name] = tool

    def names(self) -> list[str]:
        return sorted(self.tools)

    def get(self, name: str) -> Tool:
        try:
            return self.tools[name]
        except KeyError:
            raise UnknownToolError(name, self.tools) from None

    def call(self, name: str, arguments: Mapping[str, Any]) -> str:
        return self.get(name).run(arguments)


# -- built-ins ----------------------------------------------------------------------------------------------
_OPS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def calculate(expression: str) -> str:
    """Exact arithmetic on numbers with + - * / // % ** and parentheses; anything else is refused."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise Unreplayable("exponent too large")
            return _OPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand))
        raise Unreplayable(f"not arithmetic: {ast.dump(node)[:60]}")

    try:
        value = ev(ast.parse(expression.replace("^", "**"), mode="eval"))
    except (SyntaxError, ZeroDivisionError, OverflowError) as exc:
        return f"ERROR: {exc}"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _calculator(args: Mapping[str, Any]) -> str:
    expression = args.get("expression", args.get("expr"))
    if not isinstance(expression, str):
        raise Unreplayable("calculator needs a string `expression`")
    return calculate(expression)


def key_value_tool(table: Mapping[str, str], *, name: str = "lookup") -> Tool:
    def run(args: Mapping[str, Any]) -> str:
        key = str(args.get("key", ""))
        return table.get(key, f"ERROR: no entry for {key!r}")

    return Tool(name, "Looks a key up in a fixed table.", run, {"type": "object", "properties": {"key": {}}})


_WORD = re.compile(r"\w+")


def corpus_search_tool(documents: Mapping[str, str], *, name: str = "search", k: int = 2) -> Tool:
    """Deterministic keyword search: documents ranked by how many query words they contain, then by id."""

    def run(args: Mapping[str, Any]) -> str:
        words = {w.lower() for w in _WORD.findall(str(args.get("query", "")))}
        scored = sorted(
            ((len(words & {w.lower() for w in _WORD.findall(text)}), doc_id) for doc_id, text in documents.items()),
            key=lambda t: (-t[0], t[1]),
        )
        hits = [doc_id for score, doc_id in scored[:k] if score > 0]
        return "\n".join(f"[{doc_id}] {documents[doc_id]}" for doc_id in hits) or "no results"

    return Tool(name, "Searches a fixed set of documents.", run, {"type": "object", "properties": {"query": {}}})


CALCULATOR = Tool(
    "calculator",
    "Evaluates an arithmetic expression exactly.",
    _calculator,
    {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
)


def recorded_tool(name: str, answers: Mapping[str, str]) -> Tool:
    """Answers from a trace: ``answers`` maps canonical JSON arguments to the recorded output."""
    from faithaudit.audits.next_action import canonical_arguments

    def run(args: Mapping[str, Any]) -> str:
        key = canonical_arguments(args)
        if key not in answers:
            raise Unreplayable(f"{name} was never called with these arguments in the trace")
        return answers[key]

    return Tool(name, "Replays the trace's recorded outputs.", run)


def replay_registry(steps: Iterable[Any], *, builtins: Iterable[Tool] = (CALCULATOR,)) -> ToolRegistry:
    """Built-ins first (they compute), then one recorded tool per tool name the trace calls."""
    from faithaudit.audits.next_action import canonical_arguments

    registry = ToolRegistry()
    recorded: dict[str, dict[str, str]] = {}
    for step in steps:
        recorded.setdefault(step.tool, {})[canonical_arguments(step.arguments)] = step.output
    for name, answers in recorded.items():
        registry.register(recorded_tool(name, answers))
    for tool in builtins:
        registry.register(tool)
    return registry
