"""Shared test set-up: each area's fixtures live in its own plugin module."""

pytest_plugins = [
    "tests.fixtures.media",
    "tests.fixtures.database",
    "tests.fixtures.clip",
    "tests.fixtures.queue",
]
