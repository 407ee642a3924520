"""Benchmarks of agentbot against its peers; see bench/README.md."""
