"""Setup: create the GitHub App from app-manifest.yml and write its credentials to .env.

A side door of the composition, not a step of the flow: imports github and redact only.
"""
