"""The ingress controller: the status of the Ingresses corral serves (the nodes'
addresses) and events for what routing could not give them (conflicts lost to
older Ingresses, missing TLS Secrets, unknown backends).

`reconcile` is pure; `controller` is the shell the `ControllerManager` runs.
The routing itself is computed for the nodes by `registry/ingress.py`.
"""
