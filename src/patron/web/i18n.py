"""The dashboard's two languages (English, 简体中文): a catalogue each page module adds
its own keys to, the language of a request, and number / money / date formatting.

    from patron.web.i18n import register
    register({"cust.title": {"en": "Customers", "zh": "客户"}})

``translator(lang)("cust.title")`` then answers "客户"; ``t("x.count", n=3)`` formats
``{n}`` placeholders. An unknown key raises ``KeyError`` (a test walks every registered
key in both languages), so a typo cannot render as an empty label.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from patron.kit.clock import zone
from patron.kit.money import from_minor

LANGS = ("en", "zh")
LANG_COOKIE = "patron_lang"
CATALOGUE: dict[str, dict[str, str]] = {}

Translate = Callable[..., str]


def register(entries: Mapping[str, Mapping[str, str]]) -> None:
    """Add a module's labels. Every entry needs both languages; a key registered twice
    with different text is a mistake (two modules fighting over one label)."""
    for key, texts in entries.items():
        missing = [lang for lang in LANGS if not texts.get(lang)]
        if missing:
            raise ValueError(f"i18n key {key!r} lacks {', '.join(missing)}")
        old = CATALOGUE.get(key)
        if old is not None and old != dict(texts):
            raise ValueError(f"i18n key {key!r} registered twice with different text")
        CATALOGUE[key] = {lang: texts[lang] for lang in LANGS}


def translator(lang: str) -> Translate:
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r}")

    def t(key: str, **fmt: Any) -> str:
        try:
            text = CATALOGUE[key][lang]
        except KeyError:
            raise KeyError(f"no translation for {key!r}") from None
        return text.format(**fmt) if fmt else text

    return t


def language_of_locale(locale: str | None) -> str | None:
    """Our language of a locale or language tag (``zh-CN`` → ``zh``), None if not ours."""
    if not locale:
        return None
    head = locale.strip().lower()[:2]
    return head if head in LANGS else None


def accept_language(header: str | None) -> str | None:
    """The first of our languages in an Accept-Language header, by its q-value."""
    best: tuple[float, int, str] | None = None
    for i, part in enumerate((header or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        lang = language_of_locale(tag)
        if lang is None:
            continue
        q = 1.0
        match = re.search(r"q=([0-9.]+)", params)
        if match:
            try:
                q = float(match.group(1))
            except ValueError:
                q = 0.0
        if q > 0 and (best is None or (-q, i) < (-best[0], best[1])):
            best = (q, i, lang)
    return best[2] if best else None


def choose_lang(query: str | None, cookie: str | None, accept_language_header: str | None) -> str:
    """``?lang=`` first, then the remembered cookie, then the browser's preference, else en."""
    for value in (query, cookie):
        if value in LANGS:
            return str(value)
    return accept_language(accept_language_header) or "en"


SYMBOLS = {"CNY": "¥", "JPY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "HKD": "HK$"}


class Formatter:
    """Numbers, money, percentages and dates for one language, currency and time zone.

    Both languages group thousands with a comma (1,234,567) as zh-CN does; dates read
    ``26 Nov 2026`` / ``2026年11月26日`` in the store's time zone. ``None`` renders as an
    em dash so a missing figure is visible, never ``None``.
    """

    DASH = "—"
    _MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

    def __init__(self, lang: str, currency: str, timezone: str) -> None:
        self.lang, self.currency, self.tz = lang, currency, zone(timezone)
        self.symbol = SYMBOLS.get(currency, currency + " ")

    def number(self, value: float | int | Decimal | None, digits: int = 0) -> str:
        if value is None:
            return self.DASH
        return f"{value:,.{digits}f}"

    def money(self, value: Decimal | float | int | None, digits: int = 2) -> str:
        """An amount in major units (``Decimal("1234.5")`` → ``¥1,234.50``)."""
        if value is None:
            return self.DASH
        sign = "-" if value < 0 else ""
        return f"{sign}{self.symbol}{abs(value):,.{digits}f}"

    def price(self, value: Decimal | None) -> str:
        """A small unit price with the digits it needs (¥0.01, ¥0.0125), 2 to 6."""
        if value is None:
            return self.DASH
        digits = max(2, min(6, -value.normalize().as_tuple().exponent))  # type: ignore[operator]
        return self.money(value, digits)

    def minor(self, value: int | None) -> str:
        """An amount in integer minor units of the store's currency."""
        if value is None:
            return self.DASH
        return self.money(from_minor(value, self.currency))

    def percent(self, value: float | Decimal | None, digits: int = 1) -> str:
        """A share (0.253 → 25.3%)."""
        if value is None:
            return self.DASH
        return f"{float(value) * 100:,.{digits}f}%"

    def pct_points(self, value: float | Decimal | None, digits: int = 1) -> str:
        """A value already on a 0-100 scale (CRR 42.0 → 42.0%)."""
        if value is None:
            return self.DASH
        return f"{float(value):,.{digits}f}%"

    def date(self, value: datetime | date | None) -> str:
        if value is None:
            return self.DASH
        if isinstance(value, datetime):
            value = value.astimezone(self.tz).date()
        if self.lang == "zh":
            return f"{value.year}年{value.month}月{value.day}日"
        return f"{value.day} {self._MONTHS[value.month - 1]} {value.year}"

    def datetime(self, value: datetime | None) -> str:
        if value is None:
            return self.DASH
        local = value.astimezone(self.tz)
        return f"{self.date(local.date())} {local:%H:%M}"


register(
    {
        "lang.switch": {"en": "中文", "zh": "English"},
        "lang.other": {"en": "zh", "zh": "en"},
        "lang.name": {"en": "English", "zh": "简体中文"},
    }
)
