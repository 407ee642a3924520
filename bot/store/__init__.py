"""Store: the database tables, their Alembic migrations and how to apply them.

The bottom of the house: imports no other part of agentbot.
"""
