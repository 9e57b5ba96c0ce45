"""The HorizontalPodAutoscaler controller: sizes a Deployment (or ReplicaSet, StatefulSet) by load.

Kubernetes' autoscaling/v2 semantics. `replicas` is the replica calculator (one
proposal per metric, with the 10% tolerance and the conservative treatment of
unready pods and pods without metrics), `behavior` the stabilization windows
and rate-limit policies, `reconcile` the pure core that puts them together and
says what to write; `controller` is the shell that feeds it from the watch
caches and a `MetricsSource` (`source`) and writes the target's replicas and
the HPA's status.
"""
