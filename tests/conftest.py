"""Shared test set-up: each area's fixtures live in its own plugin module."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures.media",
    "tests.fixtures.database",
    "tests.fixtures.clip",
    "tests.fixtures.queue",
    "tests.fixtures.api",
    "tests.fixtures.s3",
]

# Tests that reach a database or broker server; CI runs them a second time
# against external DATABASE_URL / CELERY_BROKER_URL servers (`-m external`).
_SERVER_FIXTURES = {"database_url", "clean_database_url", "empty_database_url", "db_settings", "db_conn",
                    "redis_url", "broker_url", "s3_server", "s3_url"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.external)
