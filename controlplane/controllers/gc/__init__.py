"""Garbage collection: delete what lost its owner (Kubernetes' background
cascading deletion) and Events past their time to live.

`reconcile` is pure; `controller` is the shell the `ControllerManager` runs.
"""
