"""Tests of bot/publish/."""
