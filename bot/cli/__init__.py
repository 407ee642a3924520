"""CLI: `agentbot receive` (one payload through the real pipeline) and its dry run.

Composition, like bot.app: may import any part.
"""
