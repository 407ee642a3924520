"""Report: turn each change of a run into its check run and its one status comment (a
group's variants share one: `group_comment`).

May import the run record (ledger, leases, refs, groups), github and the foundations; never
commands, the scheduler, executors or publish.
"""
