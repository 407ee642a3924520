"""Whole flows through the real app over HTTP: label or comment to PR, controls, crashes."""
