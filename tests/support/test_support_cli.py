"""`patron support ...`: settings from YAML, ticket lists and details, the SLA job and the
attainment report from the shell; errors name the problem and exit 1."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine
from typer.testing import CliRunner

from patron.cli import app as cli_app
from patron.stores.models import Store
from tests.support.test_sla_api import OFFICE, cst
from tests.support.test_tickets import customer, event_kinds, message, open_ticket, ticket_row

SETTINGS = """\
# Shop hours in Shanghai, closed on Chinese public holidays.
hours:
  timezone: Asia/Shanghai
  hours:
    mon: ["09:00-18:00"]
    tue: ["09:00-18:00"]
    wed: ["09:00-18:00"]
    thu: ["09:00-18:00"]
    fri: ["09:00-18:00"]
  holidays_country: CN
targets:
  email:
    normal: {first_response: 4h, resolution: 16h}
warn_at: 0.75
caps:
  agent: {points: 100, coupon_value: 10}
"""


def run(cli: CliRunner, *args: str) -> tuple[int, str]:
    res = cli.invoke(cli_app, ["support", *args])
    return res.exit_code, res.output


def test_settings_apply_and_show(db_cli: CliRunner, store: Store, tmp_path: Path) -> None:
    code, out = run(db_cli, "settings", "show", "--store", store.slug)
    assert code == 0 and out.startswith("# version 0 (defaults)")
    assert "first_response: 1d" in out
    file = tmp_path / "support.yaml"
    file.write_text(SETTINGS, encoding="utf-8")
    code, out = run(db_cli, "settings", "apply", str(file), "--store", store.slug)
    assert code == 0 and "version 1" in out, out
    code, out = run(db_cli, "settings", "show", "--store", store.slug)
    assert out.startswith("# version 1\n")
    assert "timezone: Asia/Shanghai" in out and "holidays_country: CN" in out
    assert "first_response: 4h" in out and "warn_at: 0.75" in out
    # Invalid: every problem named, nothing applied.
    file.write_text(SETTINGS.replace("4h", "four hours").replace("0.75", "2"), encoding="utf-8")
    code, out = run(db_cli, "settings", "apply", str(file), "--store", store.slug)
    assert code == 1 and "invalid settings; nothing applied" in out
    assert "targets.email.normal.first_response" in out and "warn_at" in out
    file.write_text("hours: [unclosed", encoding="utf-8")
    code, out = run(db_cli, "settings", "apply", str(file), "--store", store.slug)
    assert code == 1 and "cannot read" in out
    assert run(db_cli, "settings", "show", "--store", store.slug)[1].startswith("# version 1\n")
    code, out = run(db_cli, "settings", "show", "--store", "no-such-store")
    assert code == 1 and "no store" in out
    code, _ = run(db_cli, "settings", "apply", str(tmp_path / "missing.yaml"), "--store", "x")
    assert code == 2  # Click's own usage error


def test_tickets_show_sla_check_and_report(
    db_cli: CliRunner, engine: Engine, store: Store, tmp_path: Path
) -> None:
    from tests.support.test_sla_api import apply

    apply(engine, store, OFFICE)
    customer(engine, store, "C-1")
    late = open_ticket(
        engine, store, now=cst(2026, 4, 7, 9), customer_external_id="C-1", subject="Late parcel"
    )
    answered = open_ticket(
        engine, store, now=cst(2026, 4, 7, 9), requester="z@example.com", channel="chat"
    )
    message(engine, store, answered, "outbound", cst(2026, 4, 7, 9, 5), author="ann")

    code, out = run(db_cli, "tickets", "--store", store.slug)
    assert code == 0, out
    assert "Late parcel" in out and "C-1" in out and "z@example.com" in out
    code, out = run(db_cli, "tickets", "--store", store.slug, "--channel", "chat")
    assert code == 0 and "Late parcel" not in out and "z@example.com" in out
    code, out = run(db_cli, "tickets", "--store", store.slug, "--status", "closed")
    assert code == 0 and out.strip() == "no tickets"
    code, out = run(db_cli, "tickets", "--store", store.slug, "--status", "lost")
    assert code == 2

    code, out = run(db_cli, "sla-check", "--store", store.slug, "--now", "2026-04-07T05:30:00")
    assert code == 0, out
    # 13:30 in Shanghai: the first response (4 h, due 13:00) is breached.
    assert "2 open tickets checked, 0 warnings, 1 breaches, 1 escalated" in out
    code, out = run(db_cli, "sla-check", "--store", store.slug, "--now", "2026-04-07T05:31:00")
    assert "0 warnings, 0 breaches, 0 escalated" in out
    assert ticket_row(engine, late).escalation_level == 1
    assert "sla_breach:first_response" in event_kinds(engine, late)

    code, out = run(db_cli, "show", str(late), "--store", store.slug)
    assert code == 0, out
    assert f"#{late} Late parcel" in out and "first response" in out and "breached" in out
    assert "sla_breach:first_response" in out and "Something is wrong" in out
    code, out = run(db_cli, "show", "999999", "--store", store.slug)
    assert code == 1 and "No ticket 999999" in out

    code, out = run(
        db_cli, "report", "--store", store.slug, "--since", "2026-04-01", "--until", "2026-04-30"
    )
    assert code == 0, out
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    assert {"email", "chat", "all"} <= set(lines)
    assert "100% (1/1)" in lines["chat"]
    code, out = run(
        db_cli, "report", "--store", store.slug, "--since", "2026-05-01", "--until", "2026-04-01"
    )
    assert code == 1 and "since" in out
