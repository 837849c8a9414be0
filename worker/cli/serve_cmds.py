"""``vidx serve`` (the HTTP API and web page) and ``vidx apikey`` (its keys)."""

from __future__ import annotations

from uuid import UUID

import click
import uvicorn

from pipeline import store
from pipeline.store.api_keys import create_api_key, list_api_keys, revoke_api_key
from worker.cli.common import EXIT_FAILURE, fail, get_settings, handle_errors, owner_option, print_json


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, envvar="PORT",
              help="Port to listen on ($PORT when set).")
@handle_errors
def serve_command(host: str, port: int) -> None:
    """Serve the HTTP API (/v1, OpenAPI at /docs) and the search page (/)."""
    from worker.api import create_app  # fastapi and the whole API (~0.5 s): only `vidx serve` needs them

    settings = get_settings()
    click.echo(f"vidx: serving on http://{host}:{port}/  (API docs at /docs)", err=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level, access_log=False,
                proxy_headers=True, server_header=False)


@click.group("apikey")
def apikey_group() -> None:
    """API keys of `vidx serve`: each maps to one owner."""


@apikey_group.command("create")
@owner_option(required=True)
@click.option("--name", default="", help="A label to recognise the key by.")
@click.option("--json", "as_json", is_flag=True, help="Print id, owner and key as JSON.")
@handle_errors
def apikey_create(owner: UUID, name: str, as_json: bool) -> None:
    """Create a key for OWNER and print it once (only its hash is stored)."""
    with store.connect(get_settings()) as conn:
        key_id, key = create_api_key(conn, owner_id=owner, name=name)
    if as_json:
        print_json({"id": str(key_id), "owner_id": str(owner), "name": name, "key": key})
        return
    click.echo(key)
    click.echo(f"vidx: key {key_id} for owner {owner}; store it now, it cannot be shown again", err=True)


@apikey_group.command("list")
@click.option("--owner", type=click.UUID, default=None, help="Only this owner's keys.")
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
@handle_errors
def apikey_list(owner: UUID | None, as_json: bool) -> None:
    """Keys (id, owner, name, created, revoked), never the keys themselves."""
    with store.connect(get_settings()) as conn:
        rows = list_api_keys(conn, owner_id=owner)
    if as_json:
        print_json(rows)
        return
    for row in rows:
        state = f"revoked {row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else "active"
        click.echo(f"{row['id']}  {row['owner_id']}  {row['created_at']:%Y-%m-%d %H:%M}  {state:<24}  {row['name']}")


@apikey_group.command("revoke")
@click.argument("key_id", type=click.UUID)
@handle_errors
def apikey_revoke(key_id: UUID) -> None:
    """Revoke a key by its id (requests with it get 403 from then on)."""
    with store.connect(get_settings()) as conn:
        found = revoke_api_key(conn, key_id)
    if not found:
        fail(f"no API key {key_id}", EXIT_FAILURE)
    click.echo(f"revoked {key_id}")
