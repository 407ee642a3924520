"""Runs: the ledger of every run and the loop that launches them.

`scheduler` and `launch` start queued runs in executors and hand results to publish; they
sit above publish in the flow. `callbacks`, `ledger`, `leases` and `refs` are the shared
record every later part reads and writes, and import only config, github and store;
`groups` (variants of one request, and their pick) is made of the ledger's runs.
"""
