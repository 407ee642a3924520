"""Configuration: the operator's environment and each repository's .github/agentbot.yml.

Imports nothing of agentbot but the foundations (store, redact); every part may use it.
"""
