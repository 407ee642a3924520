"""GitHub: the one client session, App and installation auth, and exactly-once effects.

Imports only config and store (and the foundations); every part above may use it.
"""
