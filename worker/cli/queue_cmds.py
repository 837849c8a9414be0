"""``vidx enqueue``, ``vidx worker``, ``vidx status``, ``vidx health`` (queue side)."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Attach this module's commands to the root group."""
