"""Staff passwords, session cookies, CSRF tokens and the failed-login limiter (pure: no
database).

Passwords: scrypt (n=2**14, r=8, p=1) with a random 16-byte salt, stored as the
self-describing ``scrypt$16384$8$1$<salt b64>$<key b64>`` so the cost can be raised
later without breaking stored hashes.

Session cookie: ``<claims b64>.<HMAC-SHA256 b64>`` signed with the store's
``signing_secret`` (like member tokens). The claims carry the staff id, the store id,
the expiry, a per-login nonce and a fingerprint of the password hash: a changed password
(or a rotated store secret) invalidates every session at once. A CSRF token is an HMAC
of the whole cookie, so it is valid for exactly one login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # scrypt of a megabyte password is a denial of service
SESSION_SECONDS = 12 * 3600
_N, _R, _P = 2**14, 8, 1
_DKLEN = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None when it is acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"at most {MAX_PASSWORD_LENGTH} characters"
    return None


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of ``password`` against a stored hash; False on any malformed
    hash or oversize password."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(key)
        actual = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=64 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# A hash to check against when the e-mail is unknown, so that a miss costs as much time
# as a wrong password and does not reveal which addresses have accounts.
DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def _mac(secret: str, message: str) -> str:
    return _b64(hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest())


def fingerprint(secret: str, password_hash: str) -> str:
    """A short keyed digest of the password hash: it changes with the password."""
    return _mac(secret, "pw:" + password_hash)[:16]


@dataclass(frozen=True)
class SessionClaims:
    staff_id: int
    store_id: int
    expires: int
    nonce: str
    fingerprint: str


def issue_session(
    secret: str, staff_id: int, store_id: int, password_hash: str, now: float | None = None
) -> str:
    claims = {
        "u": staff_id,
        "s": store_id,
        "e": int((now or time.time()) + SESSION_SECONDS),
        "n": secrets.token_urlsafe(12),
        "p": fingerprint(secret, password_hash),
    }
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{body}.{_mac(secret, body)}"


def read_claims(cookie: str) -> SessionClaims | None:
    """The claims of a cookie, NOT yet verified (the store id names the key); None when
    malformed."""
    if not (cookie.isascii() and cookie.isprintable()) or len(cookie) > 1024:
        return None
    try:
        body, _sig = cookie.split(".", 1)
        raw = json.loads(_unb64(body))
        claims = SessionClaims(
            int(raw["u"]), int(raw["s"]), int(raw["e"]), str(raw["n"]), str(raw["p"])
        )
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
        return None
    if not (0 < claims.staff_id < 2**63 and 0 < claims.store_id < 2**63):
        return None
    return claims


def signature_ok(secret: str, cookie: str) -> bool:
    body, _, sig = cookie.partition(".")
    return hmac.compare_digest(_mac(secret, body), sig)


def csrf_token(secret: str, cookie: str) -> str:
    return _mac(secret, "csrf:" + cookie)


def csrf_ok(secret: str, cookie: str, token: str | None) -> bool:
    if not token or not token.isascii():
        return False
    return hmac.compare_digest(csrf_token(secret, cookie), token)


class LoginLimiter:
    """Failed logins per (store, e-mail) in this process: at most ``limit`` in ``window``
    seconds; then every attempt (even a right password) is refused until the oldest
    failure ages out."""

    def __init__(self, limit: int = 10, window: float = 15 * 60, max_keys: int = 50_000):
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._failures: dict[tuple[int, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[int, str], now: float) -> deque[float]:
        failures = self._failures.get(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def retry_after(self, store_id: int, email: str, now: float | None = None) -> int:
        """Seconds until another attempt is allowed (0: allowed now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            failures = self._recent((store_id, email), now)
            if len(failures) < self.limit:
                return 0
            return max(1, int(failures[0] + self.window - now + 0.999))

    def failed(self, store_id: int, email: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._failures) >= self.max_keys:
                self._failures.clear()
            key = (store_id, email)
            failures = self._recent(key, now)
            failures.append(now)
            self._failures[key] = failures

    def succeeded(self, store_id: int, email: str) -> None:
        with self._lock:
            self._failures.pop((store_id, email), None)

    def reset(self) -> None:
        with self._lock:
            self._failures.clear()
