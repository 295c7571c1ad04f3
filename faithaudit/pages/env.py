"""The one Jinja2 environment: package templates, autoescaping on, strict undefined, the number filters."""

from __future__ import annotations

import math
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

DASH = "—"


def num(value: float | None, digits: int = 2) -> str:
    return DASH if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def signed(value: float | None, digits: int = 2) -> str:
    return DASH if value is None or not math.isfinite(value) else f"{value:+.{digits}f}"


def pct(value: float | None, digits: int = 1) -> str:
    return DASH if value is None or not math.isfinite(value) else f"{value * 100:.{digits}f}%"


def yes_no(value: bool | None) -> str:
    return DASH if value is None else ("yes" if value else "no")


def show(value: object, digits: int = 3) -> str:
    """A figure of any type as a reviewer reads it: numbers rounded, booleans yes/no, missing as a dash."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return yes_no(value)
    if isinstance(value, int | float):
        return num(float(value), digits)
    return str(value)


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("faithaudit.pages", "templates"),
        autoescape=select_autoescape(["html", "svg"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(show=show, num=num, signed=signed, pct=pct, yes_no=yes_no)
    env.globals["DASH"] = DASH
    return env


def render(template: str, **context: object) -> str:
    return environment().get_template(template).render(**context)
