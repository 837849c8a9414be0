"""API keys: created once and shown once, stored only as a hash, listed without secrets, revocable."""

from __future__ import annotations

import json
import uuid

from click.testing import CliRunner

from pipeline.store.api_keys import KEY_PREFIX, find_key_owner, hash_key
from worker.cli import cli

OWNER = uuid.UUID("cccccccc-0000-4000-8000-000000000003")


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_apikey_create_list_revoke(db_settings, db_conn) -> None:
    created = json.loads(_run("apikey", "create", "--owner", str(OWNER), "--name", "mobile app", "--json"))
    key = created["key"]
    assert key.startswith(KEY_PREFIX) and len(key) > 40
    found = find_key_owner(db_conn, key)
    assert found is not None and found.owner_id == OWNER and not found.revoked

    # Only the hash is stored: the key appears in no column of any row.
    dump = " ".join(str(row) for row in db_conn.execute("SELECT * FROM api_keys").fetchall())
    assert key not in dump
    assert db_conn.execute("SELECT key_sha256 FROM api_keys").fetchone()[0] == hash_key(key)

    listed = _run("apikey", "list", "--owner", str(OWNER))
    assert created["id"] in listed and "mobile app" in listed and key not in listed

    assert _run("apikey", "revoke", created["id"]).strip() == f"revoked {created['id']}"
    revoked = find_key_owner(db_conn, key)
    assert revoked is not None and revoked.revoked
    assert "revoked" in _run("apikey", "list")


def test_plain_create_prints_only_the_key_on_stdout(db_settings, db_conn) -> None:
    key = _run("apikey", "create", "--owner", str(OWNER)).strip()
    assert key.startswith(KEY_PREFIX) and "\n" not in key
    assert find_key_owner(db_conn, key) is not None


def test_unknown_keys_and_ids(db_settings, db_conn) -> None:
    assert find_key_owner(db_conn, "vidx_nope") is None
    assert find_key_owner(db_conn, "") is None
    result = CliRunner().invoke(cli, ["apikey", "revoke", str(uuid.uuid4())])
    assert result.exit_code == 1 and "no API key" in result.output
    result = CliRunner().invoke(cli, ["apikey", "create"])
    assert result.exit_code == 2  # --owner is required
