"""`patron program apply|show|simulate`: a store's loyalty programme from the shell.

Exit codes: 0 done; 1 nothing applied or simulated (an invalid file, an unknown store,
no programme); 2 wrong usage (Click's own).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from patron.db import unit_of_work
from patron.errors import PatronError, validation_errors
from patron.loyalty.program import ProgramConfig, ProgramError, dump_yaml, load_yaml
from patron.loyalty.programs import SimulateIn, SimulateOut, load, programs
from patron.stores.service import stores

program_app = typer.Typer(
    help="The store's loyalty programme: apply a YAML file, show it, simulate an order.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

StoreOpt = Annotated[str, typer.Option("--store", "-s", help="Store slug.")]
FileArg = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="A file to read.")
]


def _problems(lines: list[str], title: str) -> typer.Exit:
    typer.echo(f"error: {title}", err=True)
    for line in lines:
        typer.echo(f"  {line}", err=True)
    return typer.Exit(1)


def _failed(exc: PatronError) -> typer.Exit:
    lines = [f"{e['field']}: {e['message']}" for e in exc.errors]
    return _problems(lines, exc.detail if not lines else "invalid input; nothing done")


def _read_program(path: Path) -> ProgramConfig:
    try:
        return load_yaml(path.read_text(encoding="utf-8"))
    except ProgramError as exc:
        raise _problems(
            [str(p) for p in exc.problems], f"{path}: invalid programme; nothing applied"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _problems([str(exc)], f"{path}: cannot read") from None


@program_app.command("apply")
def apply_command(file: FileArg, store: StoreOpt) -> None:
    """Validate a programme (YAML) and apply it as the store's new active version.

    Every problem is printed with its field and nothing is applied. The active programme
    again changes nothing.
    """
    program = _read_program(file)
    try:
        with unit_of_work() as session:
            applied = programs.apply(session, stores.get(session, store), program, source="cli")
    except PatronError as exc:
        raise _failed(exc) from None
    if applied.created:
        typer.echo(f"applied version {applied.version} ({applied.fingerprint[:12]})")
    else:
        typer.echo(f"unchanged: version {applied.version} is active ({applied.fingerprint[:12]})")


@program_app.command("show")
def show_command(store: StoreOpt) -> None:
    """Print the active programme as YAML."""
    try:
        with unit_of_work() as session:
            row, _ = programs.active(session, stores.get(session, store))
            program = load(row)
    except PatronError as exc:
        raise _failed(exc) from None
    typer.echo(
        f"# version {row.version}, applied {row.created_at:%Y-%m-%d %H:%M} UTC "
        f"via {row.source}; fingerprint {row.fingerprint}"
    )
    typer.echo(dump_yaml(program.model_copy(update={"version": None})), nl=False)


def _read_event(path: Path) -> SimulateIn:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _problems([str(exc)], f"{path}: not a JSON file") from None
    if isinstance(data, dict) and "order" not in data:
        data = {"order": data}  # a bare order
    try:
        return SimulateIn.model_validate(data)
    except ValidationError as exc:
        lines = [f"{e['field']}: {e['message']}" for e in validation_errors(list(exc.errors()))]
        raise _problems(lines, f"{path}: invalid order") from None


def _print(result: SimulateOut) -> None:
    console = Console()  # made now: its width follows the terminal (or COLUMNS) of this run
    version = result.program_version
    head = f"programme version {version}" if version is not None else "programme from file"
    console.print(Text(f"{head}; {result.kind} on {result.local_date} ({result.timezone})"))
    for note in result.notes:
        console.print(Text(f"  · {note}"))
    table = Table("rule", "fired", "why", "points", "growth")
    others = []
    for t in result.rules:
        if t.condition == "event":
            others.append(t.rule_id)
            continue
        table.add_row(
            Text(t.label),
            Text("✓", style="green") if t.fired else Text("✗", style="red"),
            Text(t.reason),
            f"{t.points:+}" if t.fired else "",
            f"{t.growth:+}" if t.fired and t.growth else "",
        )
    console.print(table)
    if others:
        console.print(Text(f"for other events: {', '.join(others)}"))
    console.print(
        Text(
            f"base {result.base_points} + tier {result.tier_points} + rules "
            f"{result.points - result.base_points - result.tier_points} "
            f"= {result.points} points; {result.growth} growth",
            style="bold",
        )
    )


@program_app.command("simulate")
def simulate_command(
    order: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="JSON: {order: {...}, member: {...}} or a bare order.",
        ),
    ],
    store: StoreOpt,
    program: Annotated[
        Path | None,
        typer.Option(
            "--program",
            exists=True,
            dir_okay=False,
            readable=True,
            help="Simulate this YAML programme instead of the active one (nothing applied).",
        ),
    ] = None,
) -> None:
    """Explain what an order would earn: every rule, fired or not and why, then totals."""
    body = _read_event(order)
    config = _read_program(program) if program is not None else None
    try:
        with unit_of_work() as session:
            result = programs.simulate(session, stores.get(session, store), body, config)
    except PatronError as exc:
        raise _failed(exc) from None
    _print(result)
