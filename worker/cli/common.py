"""What every ``vidx`` subcommand shares: settings, exit codes, one-line errors."""

from __future__ import annotations

import functools
import json
import sys
import uuid
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from pipeline.config import Settings, load_settings
from pipeline.errors import BadInputError, ConfigError, TransientError, VidxError
from pipeline.log import configure_logging

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

DEFAULT_OWNER = uuid.UUID("00000000-0000-0000-0000-000000000000")

F = TypeVar("F", bound=Callable[..., Any])


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
