"""Shared fixtures: each family lives in its own plugin module under tests/fixtures."""

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.dovecot",
    "tests.fixtures.smtp",
    "tests.fixtures.postgres",
    "tests.e2e",
]
