"""Tests of bot/gateway/: the model proxy, the git proxy and the egress proxy."""
