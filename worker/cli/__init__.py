"""The ``vidx`` command. Each group of subcommands lives in its own module."""

from __future__ import annotations

import click

from worker.cli import db_cmds, index_cmd, queue_cmds, serve_cmds, understand_cmds
from worker.cli.common import EXIT_FAILURE, exit_process


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vidx")
def cli() -> None:
    """vidx: index videos into scenes, best frames and CLIP embeddings; search them."""


for module in (index_cmd, db_cmds, queue_cmds, understand_cmds, serve_cmds):
    module.register(cli)


def main() -> None:
    """Run ``vidx``; every exit, even after an abandoned CLIP pass, carries the command's code."""
    try:
        cli(prog_name="vidx")
    except SystemExit as exc:
        code = exc.code
        exit_process(code if isinstance(code, int) else (0 if code is None else EXIT_FAILURE))
    exit_process(0)
