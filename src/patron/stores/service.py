"""Creating stores and managing their API keys."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

from sqlalchemy.orm import Session

from patron.auth import Scope, new_key
from patron.errors import Conflict, Invalid, NotFound
from patron.kit.clock import utcnow, zone
from patron.stores import repository as repo
from patron.stores.models import ApiKey, Store

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class StoreService:
    def create(
        self,
        session: Session,
        slug: str,
        name: str,
        currency: str = "CNY",
        timezone: str = "Asia/Shanghai",
        locale: str = "zh-CN",
        webhook_secret: str | None = None,
    ) -> Store:
        if not _SLUG.match(slug):
            raise Invalid("slug: lowercase letters, digits and dashes, at most 63 characters")
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise Invalid("currency: an ISO 4217 code like CNY")
        try:
            zone(timezone)
        except ValueError as exc:
            raise Invalid(f"timezone: {exc}") from exc
        if repo.by_slug(session, slug) is not None:
            raise Conflict(f"a store {slug!r} already exists")
        store = Store(
            slug=slug,
            name=name,
            currency=currency,
            timezone=timezone,
            locale=locale,
            webhook_secret=webhook_secret or secrets.token_hex(32),
            signing_secret=secrets.token_hex(32),
        )
        session.add(store)
        session.flush()
        return store

    def get(self, session: Session, slug: str) -> Store:
        store = repo.by_slug(session, slug)
        if store is None:
            raise NotFound(f"no store {slug!r}")
        return store

    def list(self, session: Session) -> Sequence[Store]:
        return repo.all_stores(session)

    def create_key(
        self, session: Session, store: Store, name: str, scopes: Sequence[Scope]
    ) -> tuple[ApiKey, str]:
        """Returns the key row and the full secret key, which is shown only this once."""
        if not scopes:
            raise Invalid("a key needs at least one scope")
        if Scope.member in scopes:
            raise Invalid("`member` is for member tokens, not API keys")
        full, prefix, digest = new_key()
        key = ApiKey(
            store_id=store.id,
            name=name,
            prefix=prefix,
            secret_hash=digest,
            scopes=" ".join(sorted({s.value for s in scopes})),
        )
        session.add(key)
        session.flush()
        return key, full

    def keys(self, session: Session, store: Store) -> Sequence[ApiKey]:
        return repo.keys_of(session, store.id)

    def revoke_key(self, session: Session, store: Store, prefix: str) -> ApiKey:
        key = repo.key_by_prefix(session, store.id, prefix)
        if key is None:
            raise NotFound(f"no key {prefix!r} in store {store.slug!r}")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
        return key


stores = StoreService()
