"""Commands: decide what a trigger asks for and write it down as a queued run.

The `/agent` grammar, the label and comment triggers, the verbs, check-run buttons, who may
trigger, approvals of what others ask for (and their expiry), and the replies. May import the
run ledger, config, github and store; never the scheduler, executors, publish or report.
"""
