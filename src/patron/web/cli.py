"""`patron staff ...`: the accounts that log in to a store's dashboard.

Exit codes: 0 done; 1 nothing done (unknown store or account, invalid input, a
duplicate e-mail); 2 wrong usage.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from patron.db import unit_of_work
from patron.errors import PatronError
from patron.kit.cli import StoreOpt
from patron.stores.service import stores
from patron.web.models import Role
from patron.web.security import MIN_PASSWORD_LENGTH
from patron.web.staff import staff_accounts

staff_app = typer.Typer(
    help="Dashboard staff accounts (员工账号): create, list, disable.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
console = Console()


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = typer.prompt(
        f"Password (at least {MIN_PASSWORD_LENGTH} characters)",
        hide_input=True,
        confirmation_prompt=True,
    )
    return password


@staff_app.command("create")
def staff_create(
    store: StoreOpt,
    email: Annotated[str, typer.Option(help="Login e-mail (stored lower-case).")],
    name: Annotated[str, typer.Option(help="Name shown in the dashboard.")],
    role: Annotated[
        Role,
        typer.Option(
            help="owner: everything incl. staff; manager: programme, campaigns, analytics; "
            "support: customers, tickets; analyst: read-only."
        ),
    ],
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from the first line of stdin."),
    ] = False,
) -> None:
    """Create a staff account. The password is asked for (hidden) unless
    --password-stdin is given."""
    password = _read_password(password_stdin)
    try:
        with unit_of_work() as session:
            staff = staff_accounts.create(
                session, stores.get(session, store), email, name, role, password
            )
            console.print(
                f"created {staff.role.value} [bold]{staff.email}[/bold] (id {staff.id}) "
                f"for store {store}"
            )
    except PatronError as exc:
        raise _fail(exc.detail) from exc


@staff_app.command("list")
def staff_list(store: StoreOpt) -> None:
    """List a store's staff accounts."""
    try:
        with unit_of_work() as session:
            table = Table("id", "email", "name", "role", "created", "last login", "disabled")
            for s in staff_accounts.list(session, stores.get(session, store)):
                table.add_row(
                    str(s.id),
                    s.email,
                    s.name,
                    s.role.value,
                    f"{s.created_at:%Y-%m-%d %H:%M}",
                    f"{s.last_login_at:%Y-%m-%d %H:%M}" if s.last_login_at else "never",
                    f"{s.disabled_at:%Y-%m-%d %H:%M}" if s.disabled_at else "",
                )
            console.print(table)
    except PatronError as exc:
        raise _fail(exc.detail) from exc


@staff_app.command("disable")
def staff_disable(
    store: StoreOpt,
    email: Annotated[str, typer.Option(help="The account's e-mail.")],
) -> None:
    """Disable an account: it cannot log in, and its open sessions stop working at once."""
    try:
        with unit_of_work() as session:
            staff = staff_accounts.disable(session, stores.get(session, store), email)
            console.print(f"disabled {staff.email}")
    except PatronError as exc:
        raise _fail(exc.detail) from exc
