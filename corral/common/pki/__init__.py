"""The cluster's certificates and join tokens, shared by the control plane
(which signs), the agent and the CLI (which ask): pure functions over the
`cryptography` library, plus the one network step a joining client takes
before it trusts anything (`ca_fetch.fetch_ca`)."""
