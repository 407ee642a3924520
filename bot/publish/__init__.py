"""Publish: a sandbox's result through policy into one commit, a branch and a draft PR.

May import the run record (ledger, leases, refs, callbacks' result model), github, config
and the foundations; never commands, the scheduler or report.
"""
