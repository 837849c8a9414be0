"""The ``vidx`` command. Each group of subcommands lives in its own module."""

from __future__ import annotations

import click

from worker.cli import (
    db_cmds,
    index_cmd,
    queue_cmds,
    understand_cmds,  # issue 14: show, sheet, reembed
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vidx")
def cli() -> None:
    """vidx: index videos into scenes, best frames and CLIP embeddings; search them."""


for module in (index_cmd, db_cmds, queue_cmds):
    module.register(cli)
understand_cmds.register(cli)
__import__("worker.cli.serve_cmds", fromlist=["register"]).register(cli)  # vidx serve, vidx apikey (issue 16)


def main() -> None:
    cli(prog_name="vidx")
