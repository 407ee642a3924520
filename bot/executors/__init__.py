"""Executors: turn a run into a sandbox, a Kubernetes Job or a local process.

`base` is the protocol, `manifests` the Job and Secret a run gets, `kubernetes` the only
module that imports the kubernetes client. Imports config and the foundations only.
"""
