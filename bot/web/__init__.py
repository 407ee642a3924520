"""The run pages: sign-in with GitHub, `/runs` and `/runs/{id}` with their live transcript.

It reads runs, their events and usage (the ledger, the report's loaders) and writes nothing
but its own cookies and the deletion of expired events; it sits beside intake and setup,
under the app that composes it.
"""
