"""The ``vidx`` command. Each group of subcommands lives in its own module, imported when it runs.

``vidx status`` need not import what ``vidx index`` needs (the indexer,
OpenCV) or what ``vidx serve`` needs: the root group knows each command
by name and loads its module on first use (click's lazy-loading pattern),
so every command pays only for its own imports. ``vidx --help`` loads
them all, to show each one's summary.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from worker.cli.common import EXIT_FAILURE, exit_process

# command name -> "module:attribute" of its click command, in the order `vidx --help` lists them
COMMANDS = {
    "index": "worker.cli.index_cmd:index_command",
    "migrate": "worker.cli.db_cmds:migrate_command",
    "db": "worker.cli.db_cmds:db_group",
    "search": "worker.cli.db_cmds:search_command",
    "stats": "worker.cli.db_cmds:stats_command",
    "enqueue": "worker.cli.queue_cmds:enqueue_command",
    "worker": "worker.cli.queue_cmds:worker_command",
    "status": "worker.cli.queue_cmds:status_command",
    "health": "worker.cli.queue_cmds:health_command",
    "show": "worker.cli.understand_cmds:show_command",
    "sheet": "worker.cli.understand_cmds:sheet_command",
    "reembed": "worker.cli.understand_cmds:reembed_command",
    "serve": "worker.cli.serve_cmds:serve_command",
    "apikey": "worker.cli.serve_cmds:apikey_group",
}


class LazyGroup(click.Group):
    """A group whose subcommands are named here and imported only when one is asked for."""

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self._lazy)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self._lazy.get(cmd_name)
        if target is None:
            return None
        module, attribute = target.split(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command) or command.name != cmd_name:
            raise RuntimeError(f"{target} is not the click command {cmd_name!r}")
        return command


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vidx")
def cli() -> None:
    """vidx: index videos into scenes, best frames and CLIP embeddings; search them."""


def main() -> None:
    """Run ``vidx``; every exit, even after an abandoned CLIP pass, carries the command's code."""
    try:
        cli(prog_name="vidx")
    except SystemExit as exc:
        code = exc.code
        exit_process(code if isinstance(code, int) else (0 if code is None else EXIT_FAILURE))
    exit_process(0)
