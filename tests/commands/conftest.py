"""The `harness` fixture of the trigger tests, for every test of the commands."""

from tests.commands.test_triggers import harness  # noqa: F401 (a fixture, found by its name)
