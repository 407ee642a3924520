"""Tests of bot/setup/."""
