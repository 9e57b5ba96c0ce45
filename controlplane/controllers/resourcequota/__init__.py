"""The resource quota controller: each ResourceQuota's status (hard, used)
recounted from the stored objects, so deleted and finished objects free quota.

`reconcile` is pure; `controller` is the shell the `ControllerManager` runs.
"""
