"""Canonical payload hashes: the identity of a delivery for idempotent upserts."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def payload_hash(payload: Any) -> str:
    blob = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()
