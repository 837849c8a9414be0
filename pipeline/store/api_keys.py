"""The ``api_keys`` table: API keys of ``vidx serve``, each bound to one owner.

A key is ``vidx_`` plus 32 random bytes (URL-safe base64). Only its SHA-256 is
stored, so the key is shown once, at creation, and a leaked database cannot
be replayed against the API. Lookups go by the hash's index and the stored
hash is compared again in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from pipeline.core.errors import BadInputError

KEY_PREFIX = "vidx_"
_KEY_BYTES = 32
MAX_NAME_CHARS = 100
MAX_KEY_CHARS = 200  # a real key is ~48 characters: anything much longer is not one


@dataclass(frozen=True)
class KeyOwner:
    """Who a presented key belongs to, and whether it still works."""

    key_id: UUID
    owner_id: UUID
    revoked: bool


def hash_key(key: str) -> bytes:
    """SHA-256 of a key as stored in ``api_keys.key_sha256``."""
    return hashlib.sha256(key.encode("utf-8")).digest()


def create_api_key(conn: psycopg.Connection, *, owner_id: UUID, name: str = "") -> tuple[UUID, str]:
    """Store a new key for ``owner_id``; return (key id, the key). The key is not kept anywhere."""
    name = name.strip()
    if len(name) > MAX_NAME_CHARS:
        raise BadInputError(f"key name is longer than {MAX_NAME_CHARS} characters")
    key_id = uuid.uuid4()
    key = KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)
    with conn.transaction():
        conn.execute(
            "INSERT INTO api_keys (id, owner_id, name, key_sha256) VALUES (%s, %s, %s, %s)",
            (key_id, owner_id, name, hash_key(key)),
        )
    return key_id, key


def find_key_owner(conn: psycopg.Connection, key: str) -> KeyOwner | None:
    """The owner of ``key`` (revoked keys included, flagged), or None for an unknown key."""
    if not key or len(key) > MAX_KEY_CHARS:
        return None
    digest = hash_key(key)
    row = conn.execute(
        "SELECT id, owner_id, key_sha256, revoked_at IS NOT NULL FROM api_keys WHERE key_sha256 = %s",
        (digest,),
    ).fetchone()
    if row is None or not hmac.compare_digest(bytes(row[2]), digest):
        return None
    return KeyOwner(key_id=row[0], owner_id=row[1], revoked=bool(row[3]))


def list_api_keys(conn: psycopg.Connection, *, owner_id: UUID | None = None) -> list[dict[str, Any]]:
    """Keys (never their hashes), newest first; optionally of one owner."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            SELECT id, owner_id, name, created_at, revoked_at FROM api_keys
             WHERE %(owner)s::uuid IS NULL OR owner_id = %(owner)s
             ORDER BY created_at DESC, id
            """,
            {"owner": owner_id},
        ).fetchall()


def revoke_api_key(conn: psycopg.Connection, key_id: UUID) -> bool:
    """Revoke a key now (idempotent); False when no such key exists."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s RETURNING id", (key_id,)
        ).fetchone()
    return row is not None
