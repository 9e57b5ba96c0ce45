"""Node lifecycle: notice silent nodes, taint them, mark their pods not ready
and evict those pods once their tolerations run out — unless every node went
silent at once, when the control plane assumes it is the one cut off.

`reconcile` (with `tolerations` and `ratelimit`) is pure; `controller` is the
shell the `ControllerManager` runs.
"""
