"""Tests of bot/runs/."""
