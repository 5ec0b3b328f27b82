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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

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
    # Usage is recorded at most hourly: enough to find unused keys, no write per request.
    if key.last_used_at is None or now - key.last_used_at > timedelta(hours=1):
        key.last_used_at = now
    scopes: set[Scope] = set()
    for name in key.scopes.split():
        scopes |= IMPLIES[Scope(name)]
    return Principal(store=store, scopes=frozenset(scopes), key_id=key.id)


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
    def dependency(
        request: Request,
        session: SessionDep,
        _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        principal = authenticate(session, request.headers.get("authorization"))
        if scope not in principal.scopes:
            raise Forbidden(f"This endpoint needs the `{scope.value}` scope.")
        return principal

    return Depends(dependency)
