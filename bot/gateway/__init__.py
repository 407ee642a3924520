"""Gateway: the sandbox's only way out, and the only holder of the credentials it uses.

Model APIs (`models`), the run's one repository (`git`) and an egress allowlist (`egress`),
each behind the run's own gateway credential (`credentials`, `grants`). May import github,
config and the foundations; the launcher imports its credentials, the composition the rest.
"""
