"""Test doubles of the services agentbot talks to: GitHub and the Kubernetes API."""
