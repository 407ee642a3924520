"""`python -m sandbox`: run one agent run from the spec files and exit with a documented code."""

from sandbox.runner import main

if __name__ == "__main__":
    raise SystemExit(main())
