"""Tests of sandbox/, the runner inside the Job, against a real git server and callback API."""
