"""Replica membership (each replica announced in etcd on a lease) and what replicas share: the metrics relay."""
