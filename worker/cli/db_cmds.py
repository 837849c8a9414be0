"""``vidx migrate``, ``vidx db``, ``vidx search``, ``vidx stats`` (database side)."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Attach this module's commands to the root group."""
