"""Store and API-key queries."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.stores.models import ApiKey, Store


def by_slug(session: Session, slug: str) -> Store | None:
    return session.scalars(select(Store).where(Store.slug == slug)).first()


def all_stores(session: Session) -> Sequence[Store]:
    return session.scalars(select(Store).order_by(Store.id)).all()


def keys_of(session: Session, store_id: int) -> Sequence[ApiKey]:
    return session.scalars(
        select(ApiKey).where(ApiKey.store_id == store_id).order_by(ApiKey.id)
    ).all()


def key_by_prefix(session: Session, store_id: int, prefix: str) -> ApiKey | None:
    return session.scalars(
        select(ApiKey).where(ApiKey.store_id == store_id, ApiKey.prefix == prefix)
    ).first()
