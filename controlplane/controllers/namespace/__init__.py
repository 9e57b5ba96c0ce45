"""The namespace controller: empties a Terminating namespace, then deletes it
(Kubernetes' namespace lifecycle).

`reconcile` is pure; `controller` is the shell the `ControllerManager` runs.
"""
