"""What every ``vidx`` subcommand shares: settings, exit codes, one-line errors."""

from __future__ import annotations

import functools
import json
import os
import sys
import uuid
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from pipeline.core.config import Settings, load_settings
from pipeline.core.errors import BadInputError, ConfigError, TransientError, VidxError
from pipeline.core.log import configure_logging

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

DEFAULT_OWNER = uuid.UUID("00000000-0000-0000-0000-000000000000")

F = TypeVar("F", bound=Callable[..., Any])


def exit_process(code: int) -> NoReturn:
    """Exit with ``code``, also when an abandoned CLIP forward pass is still running.

    Interpreter shutdown with a thread inside torch aborts the process (exit
    134, "terminate called without an active exception"); in that case the
    output is flushed and the process leaves at once with its real code.
    """
    runner = sys.modules.get("pipeline.clip.runner")  # never import torch just to ask
    if runner is not None and runner.pass_in_progress():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


def fail(message: str, code: int) -> NoReturn:
    """Print one clear line on stderr and exit with ``code``."""
    click.echo(f"vidx: error: {message}", err=True)
    sys.exit(code)


def get_settings(ctx: click.Context | None = None) -> Settings:
    """Settings loaded once per invocation; a bad variable exits 2 naming it."""
    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    if root.obj is None:
        root.obj = {}
    if "settings" not in root.obj:
        try:
            settings = load_settings()
        except ConfigError as exc:
            fail(str(exc), EXIT_USAGE)
        configure_logging(settings.log_format, settings.log_level)
        root.obj["settings"] = settings
    return root.obj["settings"]


def handle_errors(func: F) -> F:
    """Turn vidx errors (and stray exceptions) into one stderr line and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except (BadInputError, ConfigError) as exc:
            fail(str(exc), EXIT_USAGE)
        except TransientError as exc:
            fail(str(exc), EXIT_FAILURE)
        except VidxError as exc:
            fail(str(exc), EXIT_FAILURE)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as exc:  # noqa: BLE001 -- a bug: still one line, details in the debug log
            fail(f"{type(exc).__name__}: {exc}", EXIT_FAILURE)

    return wrapper  # type: ignore[return-value]


def owner_option(required: bool = False) -> Callable[[F], F]:
    """``--owner UUID`` parsed as a UUID (usage error otherwise)."""
    # click >= 8.2 treats an explicit default=None as a default: a required option must not pass one
    extra: dict[str, Any] = {} if required else {"default": str(DEFAULT_OWNER)}
    return click.option(
        "--owner",
        "owner",
        type=click.UUID,
        required=required,
        show_default=not required,
        help="Owner (tenant) UUID.",
        **extra,
    )


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))
