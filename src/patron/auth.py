"""API keys with scopes, and signed short-lived member tokens.

A key is ``pk_<prefix>_<secret>``: the prefix finds the row, the secret is checked
against its SHA-256 hash (a 256-bit random secret needs no slow KDF). Every request
resolves to exactly one store, and every query downstream is scoped to it.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import event, inspect, or_, select, update
from sqlalchemy.orm import Session, make_transient_to_detached
from starlette.concurrency import run_in_threadpool

from patron.errors import Forbidden, Unauthorized
from patron.kit.clock import utcnow
from patron.stores.models import ApiKey, Store


class Scope(enum.StrEnum):
    admin = "admin"
    ingest = "ingest"
    read = "read"
    member = "member"


# What each key scope also grants: admin can do everything a key can.
IMPLIES: dict[Scope, set[Scope]] = {
    Scope.admin: {Scope.admin, Scope.ingest, Scope.read},
    Scope.ingest: {Scope.ingest},
    Scope.read: {Scope.read},
    Scope.member: {Scope.member},
}


@dataclass(frozen=True)
class Principal:
    store: Store
    scopes: frozenset[Scope]
    key_id: int | None = None
    customer_id: int | None = None  # set for member tokens


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key() -> tuple[str, str, str]:
    """Returns (full key shown once, prefix, secret hash)."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"pk_{prefix}_{secret}", prefix, hash_secret(secret)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_member_token(
    store: Store, customer_id: int, ttl_seconds: int, now: float | None = None
) -> tuple[str, int]:
    expires = int((now or time.time()) + ttl_seconds)
    body = _b64(
        json.dumps({"s": store.id, "c": customer_id, "e": expires}, separators=(",", ":")).encode()
    )
    sig = _b64(hmac.new(store.signing_secret.encode(), body.encode(), hashlib.sha256).digest())
    return f"pm_{body}.{sig}", expires


def _member_principal(session: Session, token: str) -> Principal:
    try:
        body, sig = token.removeprefix("pm_").split(".", 1)
        claims = json.loads(_unb64(body))
        store_id, customer_id, expires = int(claims["s"]), int(claims["c"]), int(claims["e"])
    # OverflowError: int(1e999); RecursionError: deeply nested JSON.
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
        raise Unauthorized("Malformed member token.") from exc
    if not (0 < store_id < 2**63 and 0 < customer_id < 2**63):  # beyond any BIGINT id
        raise Unauthorized("Malformed member token.")
    store = session.get(Store, store_id)
    if store is None:
        raise Unauthorized("Invalid member token.")
    expected = _b64(hmac.new(store.signing_secret.encode(), body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, sig):
        raise Unauthorized("Invalid member token.")
    if expires < time.time():
        raise Unauthorized("Member token expired.")
    return Principal(store=store, scopes=frozenset({Scope.member}), customer_id=customer_id)


def verify_member_token(session: Session, token: str) -> Principal:
    """The principal of a member token (``pm_…``) from elsewhere than the Authorization
    header (the member pages' cookie); raises Unauthorized: malformed, tampered, expired."""
    if not (token.startswith("pm_") and token.isascii() and token.isprintable()):
        raise Unauthorized("Malformed member token.")
    return _member_principal(session, token)


# -- a short-lived cache of verified API keys --------------------------------------------
#
# Checking a key costs two queries (key, store) on every request; on the hot paths (an
# earn, a redemption) that is a sixth of the work. A verified key is remembered for
# KEY_CACHE_SECONDS: a key revoked in this process (or a store changed) is forgotten at
# once (mapper events below); in another process (the CLI, another worker) it stops
# working within KEY_CACHE_SECONDS.

KEY_CACHE_SECONDS = 5.0
_KEY_CACHE_SIZE = 4096


@dataclass(frozen=True)
class _VerifiedKey:
    key_id: int
    scopes: frozenset[Scope]
    store: Store  # detached snapshot; merged into each request's session without a query
    last_used_at: datetime | None
    until: float  # time.monotonic() deadline


_verified: dict[str, _VerifiedKey] = {}
_verified_lock = threading.Lock()


def forget_keys(*_: Any) -> None:
    """Drop every cached key (a key was revoked or a store changed in this process)."""
    with _verified_lock:
        _verified.clear()


def _key_changed(mapper: Any, connection: Any, key: ApiKey) -> None:
    # The hourly usage stamp is not a change of what the key may do.
    state = inspect(key)
    if any(
        state.attrs[name].history.has_changes()
        for name in ("revoked_at", "scopes", "secret_hash", "store_id", "prefix")
    ):
        forget_keys()


event.listen(ApiKey, "after_update", _key_changed)
event.listen(ApiKey, "after_delete", forget_keys)
event.listen(Store, "after_update", forget_keys)
event.listen(Store, "after_delete", forget_keys)


def _snapshot(store: Store) -> Store:
    copy = Store(**{c.key: getattr(store, c.key) for c in Store.__mapper__.column_attrs})
    make_transient_to_detached(copy)
    return copy


def _remember(token: str, principal: Principal, last_used_at: datetime | None) -> None:
    assert principal.key_id is not None
    entry = _VerifiedKey(
        principal.key_id,
        principal.scopes,
        _snapshot(principal.store),
        last_used_at,
        time.monotonic() + KEY_CACHE_SECONDS,
    )
    with _verified_lock:
        if len(_verified) >= _KEY_CACHE_SIZE:
            _verified.clear()
        _verified[token] = entry


def _cached_principal(session: Session, authorization: str | None) -> Principal | None:
    """The principal of a recently verified API key, without a query; None if unknown."""
    if not authorization or authorization[:7].lower() != "bearer ":
        return None
    entry = _verified.get(authorization[7:].strip())
    if entry is None or entry.until < time.monotonic():
        return None
    if entry.last_used_at is None or utcnow() - entry.last_used_at > timedelta(hours=1):
        return None  # due for its hourly usage stamp: take the full path
    store = session.merge(entry.store, load=False)
    return Principal(store=store, scopes=entry.scopes, key_id=entry.key_id)


def _stamp_at_commit(session: Session, key_id: int, now: datetime) -> None:
    """Record the key's use as the request commits, not before.

    Not on the ORM object: its UPDATE would be flushed by the request's first query and
    hold the key's row lock for the whole request; every other request of the key would
    queue behind it — under load, in worker threads that the lock holder then needs
    for its next step (a deadlock until the pool times out). Written just before COMMIT,
    the lock lasts a round trip; a concurrent request that stamped it first wins and
    this one writes nothing."""

    def stamp(s: Session) -> None:
        s.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                or_(
                    ApiKey.last_used_at.is_(None),
                    ApiKey.last_used_at < now - timedelta(hours=1),
                ),
            )
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )

    event.listen(session, "before_commit", stamp, once=True)


def authenticate(session: Session, authorization: str | None) -> Principal:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("Missing bearer token: send `Authorization: Bearer <API key>`.")
    token = authorization[7:].strip()
    # Keys and tokens are printable ASCII; anything else is refused before any use
    # (hmac.compare_digest raises on non-ASCII str, PostgreSQL on NUL).
    if not (token.isascii() and token.isprintable()):
        raise Unauthorized("Malformed bearer token.")
    if token.startswith("pm_"):
        return _member_principal(session, token)
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "pk":
        raise Unauthorized("Malformed API key.")
    key = session.scalars(select(ApiKey).where(ApiKey.prefix == parts[1])).first()
    if (
        key is None
        or key.revoked_at is not None
        or not hmac.compare_digest(key.secret_hash, hash_secret(parts[2]))
    ):
        raise Unauthorized("Invalid or revoked API key.")
    store = session.get(Store, key.store_id)
    if store is None:  # pragma: no cover - FK cascade makes this impossible
        raise Unauthorized("Invalid API key.")
    now = utcnow()
    last_used_at = key.last_used_at
    # Usage is recorded at most hourly: enough to find unused keys, no write per request.
    if last_used_at is None or now - last_used_at > timedelta(hours=1):
        _stamp_at_commit(session, key.id, now)
        last_used_at = now
    scopes: set[Scope] = set()
    for name in key.scopes.split():
        scopes |= IMPLIES[Scope(name)]
    principal = Principal(store=store, scopes=frozenset(scopes), key_id=key.id)
    _remember(token, principal, last_used_at)
    return principal


def get_session(request: Request) -> Iterator[Session]:
    """The request's unit of work: committed before the response is sent."""
    session: Session = request.app.state.sessionmaker()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# scope="function": commit runs before the response goes out, so a failed commit is
# the client's error response and never a silent loss after a 200.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


# Declares the scheme in OpenAPI (and the docs' Authorize button); it never raises:
# authenticate() reads and checks the header itself.
bearer = HTTPBearer(auto_error=False, description="An API key (`pk_…`) or a member token (`pm_…`).")


def require(scope: Scope) -> object:
    # Async: a recently verified key (no query, no I/O) is resolved on the event loop
    # without a worker-thread hop; a key to check against the database is checked in a
    # worker thread, never on the loop (blocking it on a query or on the connection pool
    # would stall every request of this worker).
    async def dependency(
        request: Request,
        session: SessionDep,
        _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        header = request.headers.get("authorization")
        principal = _cached_principal(session, header)
        if principal is None:
            principal = await run_in_threadpool(authenticate, session, header)
        if scope not in principal.scopes:
            raise Forbidden(f"This endpoint needs the `{scope.value}` scope.")
        return principal

    return Depends(dependency)
