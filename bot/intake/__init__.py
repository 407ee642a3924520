"""Intake: verify, store and acknowledge each webhook delivery, then drain the inbox.

`webhook` checks the signature and answers 202, `writer` group-commits deliveries, `inbox`
dispatches them through `router`. May import commands (the handlers it routes to) and the
foundations (github, store, logs, tasks); nothing of runs, publish or report.
"""
