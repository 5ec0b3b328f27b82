"""Referrals on both databases: attribution, qualification, rewards once, fraud rules."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine, update
from tests.referrals.conftest import (
    DAY,
    PENDING_DAYS,
    T0,
    apply_program,
    attribute,
    code_of,
    count_entries,
    customer,
    entries,
    order,
    referral,
    refund,
)

from patron.customers.models import Customer
from patron.db import unit_of_work
from patron.errors import Conflict, Invalid, NotFound
from patron.loyalty.program import ProgramConfig
from patron.loyalty.service import ledger
from patron.referrals.models import ReferralStatus
from patron.referrals.service import referrals, run_referrals
from patron.stores.models import Store

DUE = T0 + (3 + PENDING_DAYS) * DAY  # the qualifying order's return window ends


def run(engine: Engine, store: Store, now: datetime) -> int:
    with unit_of_work(engine) as session:
        return run_referrals(session, session.merge(store), now)


def points(engine: Engine, store: Store, customer_id: int) -> tuple[int, int]:
    with unit_of_work(engine) as session:
        b = ledger.balance(session, store, customer_id)
        return b.points_available, b.points_pending


def pair(engine: Engine, store: Store, **referee: Any) -> tuple[int, int, str]:
    """A referrer A with a code and a referee B; returns (A id, B id, A's code)."""
    a = customer(engine, store, "A", email="alice@example.com", phone="+86 138 0000 0001")
    b = customer(engine, store, "B", **referee)
    return a, b, code_of(engine, store, a)


# -- codes --------------------------------------------------------------------------------


def test_a_member_has_one_stable_readable_code(engine: Engine, store: Store) -> None:
    a = customer(engine, store, "A")
    b = customer(engine, store, "B")
    code = code_of(engine, store, a)
    assert code == code_of(engine, store, a)
    assert code != code_of(engine, store, b)
    assert len(code) == 8 and code.isalnum() and code.isupper()
    assert not set(code) & set("ILOU")


def test_a_code_typed_by_hand_is_recognised(engine: Engine, store: Store) -> None:
    _, _, code = pair(engine, store)
    typed = f" {code[:4].lower()}-{code[4:]} "
    out = attribute(engine, store, typed, "B")
    assert out.code == code and out.referrer_external_id == "A"


def test_codes_belong_to_their_store(engine: Engine, store: Store) -> None:
    from tests.conftest import new_store

    other = new_store(engine)
    a = customer(engine, other, "A")
    code = code_of(engine, other, a)
    customer(engine, store, "B")
    with pytest.raises(NotFound) as caught:
        attribute(engine, store, code, "B")
    assert caught.value.errors[0]["field"] == "code"


# -- attribution --------------------------------------------------------------------------


def test_a_customer_is_attributed_once(engine: Engine, store: Store) -> None:
    _, _, code = pair(engine, store)
    first = attribute(engine, store, code, "B")
    assert first.status == ReferralStatus.pending
    with unit_of_work(engine) as session:
        again, created = referrals.attribute(
            session, session.merge(store), _in(code, "B"), now=T0 + DAY
        )
    assert not created and again.id == first.id and again.attributed_at == T0
    c = customer(engine, store, "C")
    with pytest.raises(Conflict) as caught:
        attribute(engine, store, code_of(engine, store, c), "B")
    assert caught.value.errors[0]["field"] == "referee_external_id"


def _in(code: str, referee: str) -> Any:
    from patron.referrals.schemas import ReferralIn

    return ReferralIn(code=code, referee_external_id=referee)


def test_bad_codes_and_unknown_referees_name_their_field(engine: Engine, store: Store) -> None:
    _, _, code = pair(engine, store)
    with pytest.raises(Invalid, match=r"^code: "):
        attribute(engine, store, "not a code!", "B")
    with pytest.raises(NotFound) as caught:
        attribute(engine, store, code, "NOBODY")
    assert caught.value.errors[0]["field"] == "referee_external_id"


# -- rewards ------------------------------------------------------------------------------


def test_both_sides_are_rewarded_once_after_the_return_window(
    engine: Engine, store: Store, program: ProgramConfig
) -> None:
    a, _, code = pair(engine, store)
    out = attribute(engine, store, code, "B")
    order(engine, store, "O-1", "B")
    assert run(engine, store, T0 + 4 * DAY) == 0
    qualified = referral(engine, out.id)
    assert qualified.status == ReferralStatus.qualified
    assert qualified.order_external_id == "O-1"
    assert qualified.reward_due_at == DUE
    assert run(engine, store, DUE - DAY) == 0  # inside the return window
    assert count_entries(engine, store, "referral:") == 0

    assert run(engine, store, DUE) == 1
    assert run(engine, store, DUE + DAY) == 0  # a second run writes nothing
    done = referral(engine, out.id)
    assert done.status == ReferralStatus.rewarded and done.rewarded_at == DUE
    assert (done.referrer_points, done.referee_points) == (500, 200)
    assert [n for _, n in entries(engine, store, f"referral:{out.id}:referrer")] == [500]
    assert [n for _, n in entries(engine, store, f"referral:{out.id}:referee")] == [200]
    assert points(engine, store, a) == (500, 0)
    with unit_of_work(engine) as session:
        summary = referrals.summary(session, session.merge(store), a, "https://shop.example")
    assert summary.points_earned == 500
    assert summary.counts.rewarded == 1 and summary.counts.invited == 1
    assert summary.link == f"https://shop.example/r/{code}"


def test_without_return_window_the_reward_follows_delivery(engine: Engine, store: Store) -> None:
    apply_program(engine, store, referral={"after_return_window": False})
    _, _, code = pair(engine, store)
    out = attribute(engine, store, code, "B")
    order(engine, store, "O-1", "B")
    assert run(engine, store, T0 + 3 * DAY) == 1
    assert referral(engine, out.id).status == ReferralStatus.rewarded


def test_a_refunded_qualifying_order_earns_nothing(
    engine: Engine, store: Store, program: ProgramConfig
) -> None:
    _, _, code = pair(engine, store)
    out = attribute(engine, store, code, "B")
    order(engine, store, "O-1", "B")
    assert run(engine, store, T0 + 4 * DAY) == 0
    assert referral(engine, out.id).status == ReferralStatus.qualified
    refund(engine, store, "R-1", "O-1", "199.00", T0 + 5 * DAY)
    assert run(engine, store, DUE) == 0
    back = referral(engine, out.id)
    assert back.status == ReferralStatus.pending and back.order_id is None
    assert back.detail is not None and "refunded" in back.detail
    assert count_entries(engine, store, "referral:") == 0
    # A later qualifying order qualifies it again.
    order(engine, store, "O-2", "B", placed=T0 + 6 * DAY, delivered=T0 + 7 * DAY)
    assert run(engine, store, T0 + (7 + PENDING_DAYS) * DAY) == 1


def test_a_partial_refund_below_the_minimum_disqualifies(
    engine: Engine, store: Store, program: ProgramConfig
) -> None:
    _, _, code = pair(engine, store)
    out = attribute(engine, store, code, "B")
    order(engine, store, "O-1", "B", amount="120.00")
    run(engine, store, T0 + 4 * DAY)
    refund(engine, store, "R-1", "O-1", "30.00", T0 + 5 * DAY)  # 90 left < 99
    assert run(engine, store, DUE) == 0
    assert referral(engine, out.id).status == ReferralStatus.pending


def test_small_and_undelivered_orders_do_not_qualify(
    engine: Engine, store: Store, program: ProgramConfig
) -> None:
    _, _, code = pair(engine, store)
    out = attribute(engine, store, code, "B")
    order(engine, store, "O-1", "B", amount="98.99")
    order(engine, store, "O-2", "B", status="paid", delivered=None)
    order(engine, store, "O-3", "B", status="cancelled", delivered=None)
    assert run(engine, store, DUE + 30 * DAY) == 0
    assert referral(engine, out.id).status == ReferralStatus.pending


def test_no_programme_no_reward(engine: Engine, store: Store) -> None:
    _, _, code = pair(engine, store)
    attribute(engine, store, code, "B")
    order(engine, store, "O-1", "B")
    assert run(engine, store, DUE) == 0
    apply_program(engine, store)  # a programme without a referral section
    assert run(engine, store, DUE) == 0


# -- fraud rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("referee", "detail"),
    [
        ({"email": "Alice+promo@Example.com"}, "email"),
        ({"phone": "13800000001"}, "phone"),
        ({"flagged": True, "flagged_reason": "serial returner"}, "referee is flagged"),
    ],
)
def test_a_fraudulent_attribution_is_recorded_as_rejected(
    engine: Engine, store: Store, program: ProgramConfig, referee: dict[str, Any], detail: str
) -> None:
    _, _, code = pair(engine, store, **referee)
    out = attribute(engine, store, code, "B")
    assert out.status == ReferralStatus.rejected
    assert detail in (out.detail or "")
    order(engine, store, "O-1", "B")
    assert run(engine, store, DUE) == 0
    assert count_entries(engine, store, "referral:") == 0


def test_gmail_dots_and_tags_are_one_person(engine: Engine, store: Store) -> None:
    a = customer(engine, store, "A", email="jane.doe@gmail.com")
    customer(engine, store, "B", email="JaneDoe+shop@googlemail.com")
    out = attribute(engine, store, code_of(engine, store, a), "B")
    assert (out.status, out.reason) == (ReferralStatus.rejected, "self_referral")


def test_a_shared_address_is_one_household(engine: Engine, store: Store) -> None:
    home = {"address": {"line1": "88 Nanjing Rd", "city": "Shanghai", "zip": "200001"}}
    a = customer(engine, store, "A", attributes=home)
    customer(engine, store, "B", attributes={"address": "88 nanjing rd., Shanghai 200001"})
    out = attribute(engine, store, code_of(engine, store, a), "B")
    assert (out.reason, out.detail) == (
        "self_referral",
        "the referrer and the referee share one address",
    )


def test_referring_oneself_is_rejected(engine: Engine, store: Store) -> None:
    a = customer(engine, store, "A")
    out = attribute(engine, store, code_of(engine, store, a), "A")
    assert (out.status, out.reason) == (ReferralStatus.rejected, "self_referral")


def test_a_flagged_referrer_is_rejected(engine: Engine, store: Store) -> None:
    a = customer(engine, store, "A", flagged=True)
    customer(engine, store, "B")
    out = attribute(engine, store, code_of(engine, store, a), "B")
    assert (out.reason, out.detail) == ("flagged", "the referrer is flagged")


def test_a_referral_ring_is_rejected(engine: Engine, store: Store) -> None:
    a = customer(engine, store, "A")
    b = customer(engine, store, "B")
    c = customer(engine, store, "C")
    assert attribute(engine, store, code_of(engine, store, a), "B").status == "pending"
    assert attribute(engine, store, code_of(engine, store, b), "C").status == "pending"
    closing = attribute(engine, store, code_of(engine, store, c), "A")  # A→B→C→A
    assert (closing.status, closing.reason) == (ReferralStatus.rejected, "ring")


def test_a_customer_who_ordered_before_is_not_new(
    engine: Engine, store: Store, program: ProgramConfig
) -> None:
    _, _, code = pair(engine, store)
    order(engine, store, "O-0", "B", placed=T0 - 30 * DAY, delivered=T0 - 28 * DAY)
    out = attribute(engine, store, code, "B")
    assert (out.status, out.reason) == (ReferralStatus.rejected, "not_new")
    assert "O-0" in (out.detail or "")


def test_an_earlier_order_imported_late_is_caught_by_the_job(
    engine: Engine, store: Store, program: ProgramConfig
) -> None:
    _, _, code = pair(engine, store)
    out = attribute(engine, store, code, "B")
    order(engine, store, "O-1", "B")
    order(engine, store, "O-0", "B", placed=T0 - 30 * DAY, delivered=T0 - 28 * DAY)
    assert run(engine, store, DUE) == 0
    assert referral(engine, out.id).reason == "not_new"


def test_a_referrer_flagged_before_the_reward_gets_nothing(
    engine: Engine, store: Store, program: ProgramConfig
) -> None:
    a, _, code = pair(engine, store)
    out = attribute(engine, store, code, "B")
    order(engine, store, "O-1", "B")
    run(engine, store, T0 + 4 * DAY)
    with unit_of_work(engine) as session:
        session.execute(update(Customer).where(Customer.id == a).values(flagged=True))
    assert run(engine, store, DUE) == 0
    rejected = referral(engine, out.id)
    assert (rejected.status, rejected.reason) == (ReferralStatus.rejected, "flagged")
    assert count_entries(engine, store, "referral:") == 0


def test_the_per_referrer_cap_holds(engine: Engine, store: Store) -> None:
    apply_program(engine, store, referral={"per_referrer_cap": 2})
    a = customer(engine, store, "A")
    code = code_of(engine, store, a)
    for n in range(3):
        customer(engine, store, f"F{n}")
        attribute(engine, store, code, f"F{n}")
        order(engine, store, f"O-{n}", f"F{n}")
    assert run(engine, store, DUE) == 2
    with unit_of_work(engine) as session:
        page = referrals.list(session, session.merge(store), status=ReferralStatus.rejected)
    assert [(r.referee_external_id, r.reason) for r in page.items] == [("F2", "cap_reached")]
    assert points(engine, store, a) == (1000, 0)


# -- concurrency --------------------------------------------------------------------------


def run_concurrently(n: int, work: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def target(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # asserted by the caller
            results[i] = exc

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_runs_reward_once_and_keep_the_cap(engine: Engine, store: Store) -> None:
    apply_program(engine, store, referral={"per_referrer_cap": 3})
    a = customer(engine, store, "A")
    code = code_of(engine, store, a)
    for n in range(5):
        customer(engine, store, f"F{n}")
        attribute(engine, store, code, f"F{n}")
        order(engine, store, f"O-{n}", f"F{n}")
    outcomes = run_concurrently(4, lambda _i: run(engine, store, DUE))
    assert all(isinstance(o, int) for o in outcomes), outcomes
    assert sum(outcomes) == 3
    assert count_entries(engine, store, "referral:") == 6  # 3 referrals x 2 sides
    assert points(engine, store, a) == (1500, 0)
    assert run(engine, store, DUE + DAY) == 0


# -- tree and viral coefficient -----------------------------------------------------------


def _chain(engine: Engine, store: Store, names: str) -> None:
    ids = {n: customer(engine, store, n) for n in names}
    for up, down in itertools.pairwise(names):
        attribute(engine, store, code_of(engine, store, ids[up]), down)


def test_the_tree_stops_at_its_depth(engine: Engine, store: Store) -> None:
    _chain(engine, store, "ABCD")
    customer(engine, store, "E")
    attribute(engine, store, code_of(engine, store, customer_id_of(engine, store, "A")), "E")
    with unit_of_work(engine) as session:
        two = referrals.tree(session, session.merge(store), "A", 2)
        three = referrals.tree(session, session.merge(store), "A", 3)
    assert [c.external_id for c in two.root.children] == ["B", "E"]
    assert [c.external_id for c in two.root.children[0].children] == ["C"]
    assert two.root.children[0].children[0].children == []
    assert two.nodes == 3 and not two.truncated
    assert three.root.children[0].children[0].children[0].external_id == "D"
    assert three.nodes == 4
    with unit_of_work(engine) as session:
        small = referrals.tree(session, session.merge(store), "A", 3, max_nodes=2)
    assert small.truncated and small.nodes == 2


def customer_id_of(engine: Engine, store: Store, ext: str) -> int:
    with unit_of_work(engine) as session:
        return ledger.customer_id(session, store, ext)


def test_viral_coefficient_on_a_small_graph(engine: Engine, store: Store) -> None:
    """10 members; A invites B, C, D; B invites E. B and E make a qualifying order, D is
    rejected (shares A's email). invitations 4, qualified 2: i = 4/10, c = 2/4, K = 0.2."""
    apply_program(engine, store, referral={"after_return_window": False})
    ids = {n: customer(engine, store, n) for n in "ABCEFGHIJ"}
    ids["D"] = customer(engine, store, "D", email="a@example.com")
    with unit_of_work(engine) as session:
        session.execute(
            update(Customer).where(Customer.id == ids["A"]).values(email="a@example.com")
        )
    for up, down in ("AB", "AC", "AD", "BE"):
        attribute(engine, store, code_of(engine, store, ids[up]), down)
    order(engine, store, "O-B", "B")
    order(engine, store, "O-E", "E")
    assert run(engine, store, T0 + 3 * DAY) == 2
    with unit_of_work(engine) as session:
        stats = referrals.stats(session, session.merge(store), until=T0 + 10 * DAY)
    assert (stats.members, stats.invitations, stats.attributions) == (10, 4, 3)
    assert (stats.qualified, stats.rewarded, stats.rejected) == (2, 2, 1)
    assert str(stats.invites_per_member) == "0.4000"
    assert str(stats.conversion) == "0.5000"
    assert str(stats.viral_coefficient) == "0.2000"
    assert stats.active_referrers == 2 and stats.code_holders == 2
    with unit_of_work(engine) as session:
        before = referrals.stats(session, session.merge(store), since=T0 - 9 * DAY, until=T0)
    assert before.invitations == 0 and before.viral_coefficient == 0
    with pytest.raises(Invalid, match=r"^since: "), unit_of_work(engine) as session:
        referrals.stats(session, session.merge(store), since=T0, until=T0)
