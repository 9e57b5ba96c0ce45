"""The disruption controller: each PodDisruptionBudget's status (how many of its
pods are healthy, how many may be evicted now), as Kubernetes' disruption controller.

`reconcile` is pure; `controller` is the shell the `ControllerManager` runs.
"""
