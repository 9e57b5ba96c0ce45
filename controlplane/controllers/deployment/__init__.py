"""The Deployment controller: rolls a pod template out through ReplicaSets.

`reconcile` is the pure core (Kubernetes' rolling update, recreate,
proportional scaling, revision history, progress deadline and automatic
rollback; corral's BlueGreen and Canary strategies, which decide the traffic
weights in the status); `controller` is the shell that feeds it from the
watch caches and writes its actions with compare-and-swap.
"""
