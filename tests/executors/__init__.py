"""Tests of bot/executors/."""
