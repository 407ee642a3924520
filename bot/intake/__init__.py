"""Intake: verify, store and acknowledge each webhook delivery, then drain the inbox.

`webhook` checks the signature and answers 202, `writer` group-commits deliveries, `inbox`
dispatches them through `router`, and `redeliver` asks GitHub to send again the deliveries
that failed while agentbot was down. May import commands (the handlers it routes to), the
foundations (github, store, logs, tasks) and the run leases (`redeliver` holds a loop lease);
nothing else of runs, nor publish or report.
"""
