"""Members' standing: the tier each member holds (``loyalty_members``), tier history.

A customer without a membership row holds the programme's first tier.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.kit.repository import chunks
from patron.loyalty.models import LoyaltyMember


def member_tier(session: Session, store_id: int, customer_id: int) -> str | None:
    """The tier code the member holds; None: never placed (the programme's first tier)."""
    return session.scalar(
        select(LoyaltyMember.tier).where(
            LoyaltyMember.store_id == store_id, LoyaltyMember.customer_id == customer_id
        )
    )


def member_tiers(session: Session, store_id: int, customer_ids: Sequence[int]) -> dict[int, str]:
    """Tier codes of these members (those never placed are missing)."""
    out: dict[int, str] = {}
    for chunk in chunks(sorted(set(customer_ids))):
        rows = session.execute(
            select(LoyaltyMember.customer_id, LoyaltyMember.tier).where(
                LoyaltyMember.store_id == store_id, LoyaltyMember.customer_id.in_(chunk)
            )
        )
        out.update({cid: tier for cid, tier in rows})
    return out
