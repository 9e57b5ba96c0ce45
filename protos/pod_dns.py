"""A pod's name resolution and Service variables: dnsPolicy and enableServiceLinks.

- ClusterFirst (the default): the cluster's DNS where the agent serves one;
  a hostNetwork pod falls back to Default, as in Kubernetes.
- ClusterFirstWithHostNet: the cluster's DNS, hostNetwork pods too.
- Default: the node's own resolver (the cluster's names do not resolve).
- None (which needs dnsConfig) is not supported: refused at validation.

enableServiceLinks (default true) gives every container the variables of the
Services of its namespace (`<NAME>_SERVICE_HOST`, ...); false gives none.
"""

from __future__ import annotations

from typing import Final

from protos.corral.v1 import pod_pb2

CLUSTER_FIRST: Final = "ClusterFirst"
WITH_HOST_NET: Final = "ClusterFirstWithHostNet"
DNS_POLICIES: Final = (CLUSTER_FIRST, WITH_HOST_NET, "Default")


def cluster_dns(spec: pod_pb2.PodSpec) -> bool:
    """Whether the pod's containers get the cluster's DNS servers and search domains."""
    if spec.host_network:
        return spec.dns_policy == WITH_HOST_NET
    return spec.dns_policy != "Default"


def service_links(spec: pod_pb2.PodSpec) -> bool:
    """Whether the pod's containers get the Service variables of their namespace."""
    return not spec.HasField("enable_service_links") or spec.enable_service_links
