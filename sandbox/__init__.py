"""What runs inside a run's sandbox: checkout, setup, agent, changeset and upload (stdlib only)."""
