"""Alembic migrations of agentbot's database, applied by `agentbot migrate` and at start."""
