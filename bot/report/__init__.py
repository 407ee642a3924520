"""Report: turn each change of a run into its check run and its one status comment.

May import the run record (ledger, leases, refs), github and the foundations; never
commands, the scheduler, executors or publish.
"""
