"""Executors turn a run into a sandbox: a Kubernetes Job or a local process."""
