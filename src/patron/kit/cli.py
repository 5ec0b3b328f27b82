"""Options shared by the package commands (`patron <package> ...`): the store, and
instants given on the command line."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from patron.kit.clock import as_utc

StoreOpt = Annotated[str, typer.Option("--store", "-s", help="Store slug.")]
WhenOpt = Annotated[
    datetime | None,
    typer.Option(
        formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"],
        help="UTC unless an offset is given.",
    ),
]


def option_instant(value: datetime | None) -> datetime | None:
    """A ``WhenOpt`` value as aware UTC: one without an offset is taken as UTC."""
    if value is None:
        return None
    return as_utc(value) if value.tzinfo else value.replace(tzinfo=UTC)
