"""The ReplicaSet controller: keeps `spec.replicas` pods of a template running.

`reconcile` is the pure core (claim pods, create/delete the difference, status);
`controller` is the shell run by the controller manager, with Kubernetes'
expectations so a stale cache never makes it create or delete twice.
"""
