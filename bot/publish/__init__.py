"""Publish: a sandbox's result through policy into one commit, a branch and a draft PR; and
the pick of one variant of a group (`picks`).

May import the run record (ledger, leases, refs, groups, callbacks' result model), github, config
and the foundations; never commands, the scheduler or report.
"""
