"""agentbot: a GitHub App that hands issues to coding agents in sandboxes."""

__version__ = "0.1.0"
