"""Money as integer minor units with a currency.

Amounts travel as ``Decimal`` (strings in JSON/CSV) and are stored as integer minor
units, so sums are exact on every database and no float ever touches a price.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

# ISO 4217 exponents that differ from 2.
_EXPONENTS: dict[str, int] = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
}
# Largest amount accepted anywhere (10^13 major units): far above any real order, and
# minor units still fit a signed 64-bit column.
MAX_MAJOR = Decimal(10) ** 13


class MoneyError(ValueError):
    """An amount that cannot be represented in its currency."""


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def to_minor(amount: Decimal | str | int, currency: str) -> int:
    """Convert a major-unit amount to integer minor units, refusing lost precision."""
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount).strip())
    except InvalidOperation as exc:
        raise MoneyError(f"not a decimal amount: {amount!r}") from exc
    if not value.is_finite():
        raise MoneyError(f"not a finite amount: {amount!r}")
    if abs(value) >= MAX_MAJOR:
        raise MoneyError(f"amount out of range: {amount!r}")
    exp = _EXPONENTS.get(currency, 2) if len(currency) == 3 else exponent(currency)
    scaled = value.scaleb(exp)
    minor = int(scaled)
    if minor != scaled:
        raise MoneyError(f"{amount} has more decimal places than {currency} allows ({exp})")
    return minor


def from_minor(minor: int, currency: str) -> Decimal:
    exp = exponent(currency)
    return Decimal(minor).scaleb(-exp).quantize(Decimal(1).scaleb(-exp))
