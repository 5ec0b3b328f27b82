"""`patron rewards list`: the catalogue as a table."""

from __future__ import annotations

from typer.testing import CliRunner

from patron.cli import app as cli_app
from tests.rewards.conftest import Shop


def test_rewards_list(db_cli: CliRunner, shop: Shop) -> None:
    shop.customer("C-1", points=1000)
    shop.redeem("C-1", "gift")
    res = db_cli.invoke(cli_app, ["rewards", "list", "--store", shop.store.slug])
    assert res.exit_code == 0, res.output
    lines = {line.split("│")[1].strip(): line for line in res.output.splitlines() if "│" in line}
    assert {"coupon-10", "gift", "serum", "cash", "draw"} <= set(lines)
    gift = [cell.strip() for cell in lines["gift"].split("│")[1:-1]]
    assert gift == ["gift", "gift", "Travel set", "200", "4", "1", "yes"]
    assert "at checkout" in lines["cash"] and "unlimited" in lines["coupon-10"]
    assert "no" in lines["retired"].split("│")[-2]
    res = db_cli.invoke(cli_app, ["rewards", "list", "--store", "no-such-store"])
    assert res.exit_code == 1 and "error" in res.output
