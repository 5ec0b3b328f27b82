"""Campaign templates: Jinja2 in a sandbox, written by merchants, rendered per customer.

**Safety.** Templates run in an ``ImmutableSandboxedEnvironment`` (no access to
attributes starting with ``_``, no mutation of lists or dicts, no ``str.format``
tricks), with ``StrictUndefined`` (a misspelt name fails instead of rendering empty)
and only plain values in the context (dicts, lists, strings, numbers: never an ORM
row). On top of the sandbox a render has a *budget*: at most ``MAX_CALLS`` calls
(functions, methods and macros), ``MAX_ITEMS`` items from ``range`` in total, no
repetition (``*``) or power (``**``) beyond ``MAX_ITEMS``, no numeric filter argument
beyond ``MAX_ITEMS``, and at most ``MAX_OUTPUT`` characters of output (the output is
streamed, so a runaway template is stopped as it grows). A template that breaks any of
these fails with :class:`TemplateFailed`, never with the process.

**Context.** ``customer`` (first_name, last_name, name, email, tier, points,
expiring_points, expiring_date, referral_link, external_id, locale, birthday),
``store`` (name, currency), ``recommendations`` (up to three dicts: name, sku),
``unsubscribe_url``, ``lang``, ``occasion`` (the trigger's data: e.g. ``to_tier``).

**Validation** (on save): each template must parse, use only these names, and render
against a sample customer; a failure is :class:`patron.errors.Invalid` naming the
field, e.g. ``variants.B.body.zh``.
"""

from __future__ import annotations

import functools
import html
import operator
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from patron.errors import Invalid

MAX_CALLS = 10_000
MAX_ITEMS = 10_000
MAX_OUTPUT = 200_000  # characters of one rendered subject or body
MAX_SECONDS = 2.0
LANGS = ("en", "zh")
NAMES = frozenset({"customer", "store", "recommendations", "unsubscribe_url", "lang", "occasion"})


class TemplateFailed(Exception):
    """A template that cannot be rendered (error, sandbox or budget): the message."""


@dataclass
class _Budget:
    calls: int = 0
    items: int = 0
    deadline: float = 0.0

    def spend(self, calls: int = 0, items: int = 0) -> None:
        self.calls += calls
        self.items += items
        if self.calls > MAX_CALLS:
            raise SecurityError("too many calls in one template")
        if self.items > MAX_ITEMS:
            raise SecurityError("too many loop items in one template")
        if time.monotonic() > self.deadline:
            raise SecurityError("the template takes too long")


def _limited_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for value in (*args[1:], *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ITEMS:
                raise SecurityError(f"filter {name}: argument too large")
            if name == "format" and isinstance(value, str) and re.search(r"\d{5,}", value):
                raise SecurityError("filter format: width too large")
        if name == "format" and args and isinstance(args[0], str) and re.search(r"\d{5,}", args[0]):
            raise SecurityError("filter format: width too large")
        return fn(*args, **kwargs)

    # Keep Jinja's pass_context / pass_environment markers.
    for marker in ("jinja_pass_arg",):
        if hasattr(fn, marker):
            setattr(wrapper, marker, getattr(fn, marker))
    return wrapper


class CampaignEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with a per-render budget (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(
            autoescape=autoescape,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        self._local = threading.local()
        self.filters = {name: _limited_filter(name, fn) for name, fn in self.filters.items()}
        kept = {k: v for k, v in self.globals.items() if k in ("dict", "namespace", "cycler")}
        self.globals = {**kept, "range": self._range}

    @property
    def budget(self) -> _Budget:
        """This thread's render budget (renders in other threads have their own)."""
        found: _Budget | None = getattr(self._local, "budget", None)
        if found is None:
            found = self._local.budget = _Budget(deadline=float("inf"))
        return found

    @budget.setter
    def budget(self, value: _Budget) -> None:
        self._local.budget = value

    @functools.lru_cache(maxsize=256)  # noqa: B019 (two module-level instances)
    def compiled(self, source: str) -> jinja2.Template:
        return self.from_string(source)

    def _range(self, *args: int) -> range:
        items = range(*args)
        self.budget.spend(calls=1, items=len(items))
        return items

    def call(
        __self,
        __context: Any,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        __self.budget.spend(calls=1)
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise SecurityError("power too large")
            if isinstance(left, int) and left.bit_length() * abs(right) > 4096:
                raise SecurityError("power too large")
            return operator.pow(left, right)
        for seq, n in ((left, right), (right, left)):
            if (
                isinstance(seq, str | list | tuple)
                and isinstance(n, int)
                and len(seq) * n > MAX_ITEMS
            ):
                raise SecurityError("repetition too large")
        return operator.mul(left, right)


_HTML = CampaignEnvironment(autoescape=True)
_TEXT = CampaignEnvironment(autoescape=False)


def _env(html_body: bool) -> CampaignEnvironment:
    return _HTML if html_body else _TEXT


def render_one(source: str, context: Mapping[str, Any], *, html_body: bool = False) -> str:
    """Render one template; :class:`TemplateFailed` with the reason on any failure."""
    env = _env(html_body)
    try:
        template = env.compiled(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateFailed(f"syntax error on line {exc.lineno}: {exc.message}") from exc
    env.budget = _Budget(deadline=time.monotonic() + MAX_SECONDS)
    out: list[str] = []
    size = 0
    try:
        stream: Iterator[str] = template.generate(dict(context))
        for chunk in stream:
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateFailed(f"output longer than {MAX_OUTPUT} characters")
            out.append(chunk)
    except TemplateFailed:
        raise
    except jinja2.UndefinedError as exc:
        raise TemplateFailed(f"unknown name: {exc.message}") from exc
    except SecurityError as exc:
        raise TemplateFailed(f"not allowed: {exc}") from exc
    except RecursionError as exc:
        raise TemplateFailed("too deeply nested (recursion)") from exc
    except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
        raise TemplateFailed(f"{type(exc).__name__}: {exc}") from exc
    except MemoryError as exc:
        raise TemplateFailed("output too large") from exc
    finally:
        env.budget = _Budget(deadline=float("inf"))
    return "".join(out)


def pick(texts: Mapping[str, Any], lang: str) -> tuple[str, str]:
    """(template, its language) in ``lang``, or the other language when missing."""
    for candidate in (lang, *(x for x in LANGS if x != lang)):
        value = texts.get(candidate)
        if isinstance(value, str) and value.strip():
            return value, candidate
    raise TemplateFailed("no template in any language")


_BREAKS = re.compile(r"<\s*(br|/p|/div|/h[1-6]|/li|/tr)\s*/?>", re.IGNORECASE)
_TAGS = re.compile(r"<[^>]*>")
_LINKS = re.compile(r"<a\s[^>]*href=\"([^\"]*)\"[^>]*>(.*?)</a>", re.IGNORECASE | re.DOTALL)
_BLANKS = re.compile(r"\n{3,}")


def html_to_text(body: str) -> str:
    """A plain-text alternative of an HTML body: links as ``text (url)``, block ends as
    line breaks, tags dropped, entities decoded."""
    text = _LINKS.sub(lambda m: f"{m.group(2)} ({m.group(1)})", body)
    text = _BREAKS.sub("\n", text)
    text = html.unescape(_TAGS.sub("", text))
    lines = [line.strip() for line in text.splitlines()]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip() + "\n"


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    html: str
    lang: str  # the language actually used (after fallback)


def render_message(
    subject: Mapping[str, Any],
    body: Mapping[str, Any],
    context: Mapping[str, Any],
    lang: str,
    *,
    html_body: bool,
) -> RenderedMessage:
    """Subject and body in ``lang`` (falling back to the other language)."""
    subject_src, used = pick(subject, lang)
    body_src, _ = pick(body, used)
    ctx = {**context, "lang": used}
    subject_out = " ".join(render_one(subject_src, ctx).split())[:255]
    body_out = render_one(body_src, ctx, html_body=html_body)
    if html_body:
        return RenderedMessage(subject_out, html_to_text(body_out), body_out, used)
    return RenderedMessage(subject_out, body_out, "", used)


# -- validation ---------------------------------------------------------------------------


def sample_context() -> dict[str, Any]:
    """A made-up customer: what a template is checked against when saved."""
    return {
        "customer": {
            "external_id": "sample",
            "first_name": "Ann",
            "last_name": "Lee",
            "name": "Ann Lee",
            "email": "ann@example.com",
            "locale": "en",
            "birthday": "1990-05-17",
            "tier": "Gold",
            "points": 1200,
            "expiring_points": 300,
            "expiring_date": "2026-12-31",
            "referral_link": "https://shop.example/r/ANN123",
        },
        "store": {"name": "Sample store", "currency": "CNY"},
        "recommendations": [
            {"name": "Green tea", "sku": "TEA-1"},
            {"name": "Teapot", "sku": "POT-2"},
        ],
        "unsubscribe_url": "https://shop.example/u/sample",
        "lang": "en",
        # Every trigger's data (see campaign.py): points_expiring, tier changes, birthday,
        # downgrade warning.
        "occasion": {
            "points": 300,
            "expires_at": "2026-12-31T15:59:59+00:00",
            "days_before": 7,
            "from_tier": "silver",
            "to_tier": "gold",
            "change": "upgrade",
            "reason": "growth reached 5000",
            "year": 2026,
            "review_at": "2026-12-31T16:00:00+00:00",
            "tier": "gold",
            "value": 3200,
            "retain": 4000,
            "missing": 800,
        },
    }


def _unknown_names(source: str, html_body: bool) -> set[str]:
    parsed: nodes.Template = _env(html_body).parse(source)
    return set(meta.find_undeclared_variables(parsed)) - NAMES - {"range"}


def check(source: str, field: str, *, html_body: bool) -> dict[str, str] | None:
    """The field error of one template, or None when it is fine."""
    try:
        unknown = _unknown_names(source, html_body)
    except jinja2.TemplateSyntaxError as exc:
        return {"field": field, "message": f"syntax error on line {exc.lineno}: {exc.message}"}
    if unknown:
        names = ", ".join(sorted(unknown))
        allowed = ", ".join(sorted(NAMES))
        return {"field": field, "message": f"unknown name(s) {names}; allowed: {allowed}"}
    try:
        render_one(source, sample_context(), html_body=html_body)
    except TemplateFailed as exc:
        return {"field": field, "message": str(exc)}
    return None


def validate_variants(variants: Mapping[str, Mapping[str, Mapping[str, Any]]], html: bool) -> None:
    """Check every template of ``{variant key: {"subject": {lang: src}, "body": {...}}}``;
    raise :class:`Invalid` naming each failing field (``variants.<key>.<part>.<lang>``)."""
    errors: list[dict[str, str]] = []
    for key, parts in variants.items():
        for part in ("subject", "body"):
            texts = parts.get(part) or {}
            if not any(isinstance(v, str) and v.strip() for v in texts.values()):
                errors.append(
                    {"field": f"variants.{key}.{part}", "message": "needs an en or zh template"}
                )
                continue
            for lang, source in texts.items():
                if lang not in LANGS:
                    errors.append(
                        {"field": f"variants.{key}.{part}.{lang}", "message": "language en or zh"}
                    )
                    continue
                error = check(
                    str(source), f"variants.{key}.{part}.{lang}", html_body=html and part == "body"
                )
                if error:
                    errors.append(error)
    if errors:
        first = errors[0]
        raise Invalid(f"{first['field']}: {first['message']}", errors=errors)
