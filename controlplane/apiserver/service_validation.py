"""Validation of Services (v1), as Kubernetes validates them, for what corral serves. Pure code.

Types: ClusterIP, NodePort, LoadBalancer (ExternalName is refused). Protocols:
TCP and UDP (SCTP is refused: neither data path carries it). IPv4
SingleStack only. Fields corral would have to ignore to accept are refused
with the reason (loadBalancerIP, a loadBalancerClass). `validation.py` calls
these and passes in the label and name checks it owns.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping

from controlplane.apiserver.problems import Problems
from protos.corral.v1 import service_pb2
from protos.services import CLIENT_IP, HEADLESS, MAX_AFFINITY_SECONDS, SESSION_AFFINITIES

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
LOAD_BALANCING = ("RoundRobin", "LeastConnections")
PROTOCOLS = ("TCP", "UDP")
TRAFFIC_POLICIES = ("Cluster", "Local")
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")

LabelsCheck = Callable[[Problems, str, Mapping[str, str]], None]
NameCheck = Callable[[Problems, str, str], None]


def validate_protocol(p: Problems, path: str, protocol: str) -> None:
    if protocol == "SCTP":
        p.add(path, 'Unsupported value: "SCTP": corral\'s Service data paths carry TCP and UDP only')
    elif protocol not in PROTOCOLS:
        p.add(path, f'must be one of "TCP", "UDP", got "{protocol}"')


def validate_service(
    p: Problems, spec: service_pb2.ServiceSpec, *, labels: LabelsCheck, port_name: NameCheck, label_name: NameCheck
) -> None:
    if spec.type == "ExternalName":
        p.add("spec.type", 'Unsupported value: "ExternalName": corral has no ExternalName Services')
    else:
        p.one_of("spec.type", spec.type, SERVICE_TYPES)
    p.one_of("spec.loadBalancing", spec.load_balancing, LOAD_BALANCING)
    labels(p, "spec.selector", spec.selector)
    headless = validate_cluster_ip(p, spec)
    validate_policies(p, spec)
    if not spec.ports and not (headless and spec.selector):
        # A headless Service with a selector and no ports is valid (its DNS name lists the pods).
        p.add("spec.ports", "required: at least one port")
    names: set[str] = set()
    first_port: dict[tuple[int, str], int] = {}
    first_node_port: dict[tuple[int, str], int] = {}
    for i, port in enumerate(spec.ports):
        at = f"spec.ports[{i}]"
        p.port(f"{at}.port", port.port)
        validate_protocol(p, f"{at}.protocol", port.protocol)
        p.port(f"{at}.nodePort", port.node_port, allow_zero=True)
        if port.node_port and spec.type not in NODE_PORT_TYPES:
            p.add(f"{at}.nodePort", f"may not be used when `type` is '{spec.type}'")
        if len(spec.ports) > 1 and not port.name:
            p.add(f"{at}.name", "required when a Service has more than one port")
        if port.name:
            label_name(p, f"{at}.name", port.name)
            if port.name in names:
                p.add(f"{at}.name", f'duplicate port name "{port.name}"')
            names.add(port.name)
        if port.target_port.HasField("int_val"):
            p.port(f"{at}.targetPort", port.target_port.int_val)
        else:
            port_name(p, f"{at}.targetPort", port.target_port.str_val)
        same_port = first_port.setdefault((port.port, port.protocol), i)
        if same_port != i:
            p.add(f"{at}.port", f"duplicate port {port.port}/{port.protocol}: spec.ports[{same_port}] has it")
        if port.node_port:
            same_node_port = first_node_port.setdefault((port.node_port, port.protocol), i)
            if same_node_port != i:
                p.add(f"{at}.nodePort", f"duplicate nodePort {port.node_port}: spec.ports[{same_node_port}] has it")


def validate_policies(p: Problems, spec: service_pb2.ServiceSpec) -> None:
    if spec.external_traffic_policy:
        p.one_of("spec.externalTrafficPolicy", spec.external_traffic_policy, TRAFFIC_POLICIES)
        if spec.type not in NODE_PORT_TYPES:
            p.add("spec.externalTrafficPolicy", "may only be set when `type` is 'NodePort' or 'LoadBalancer'")
    if spec.HasField("internal_traffic_policy"):
        p.one_of("spec.internalTrafficPolicy", spec.internal_traffic_policy, TRAFFIC_POLICIES)
    for i, cidr in enumerate(spec.load_balancer_source_ranges):
        try:
            network = ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            p.add(f"spec.loadBalancerSourceRanges[{i}]", f'must be a CIDR such as "192.168.1.0/24", got "{cidr}"')
            continue
        if network.version != 4:
            p.add(f"spec.loadBalancerSourceRanges[{i}]", "must be an IPv4 CIDR (corral's Services are IPv4)")
    if spec.load_balancer_source_ranges and spec.type != "LoadBalancer":
        p.add("spec.loadBalancerSourceRanges", "may only be set when `type` is 'LoadBalancer'")
    if spec.load_balancer_ip:
        p.add(
            "spec.loadBalancerIP",
            "is deprecated and not served: corral's load balancer answers on every node's address "
            "(status.loadBalancer.ingress); remove the field",
        )
    if spec.HasField("load_balancer_class"):
        p.add("spec.loadBalancerClass", "corral serves LoadBalancer Services of its own only: remove the field")
    if spec.HasField("allocate_load_balancer_node_ports") and spec.type != "LoadBalancer":
        p.add("spec.allocateLoadBalancerNodePorts", "may only be set when `type` is 'LoadBalancer'")
    validate_session_affinity(p, spec)
    families = list(spec.ip_families)
    if any(f != "IPv4" for f in families) or len(families) > 1:
        p.add("spec.ipFamilies", f'must be ["IPv4"] (corral\'s Services are IPv4 SingleStack), got {families}')
    if spec.HasField("ip_family_policy") and spec.ip_family_policy != "SingleStack":
        p.add(
            "spec.ipFamilyPolicy",
            f'Unsupported value: "{spec.ip_family_policy}": corral\'s Services are IPv4 SingleStack',
        )


def validate_session_affinity(p: Problems, spec: service_pb2.ServiceSpec) -> None:
    """As Kubernetes: None or ClientIP; ClientIP's timeout in 1..86400; no config with None."""
    if spec.session_affinity:
        p.one_of("spec.sessionAffinity", spec.session_affinity, SESSION_AFFINITIES)
    if spec.session_affinity != CLIENT_IP:
        if spec.session_affinity == "None" and spec.HasField("session_affinity_config"):
            p.add("spec.sessionAffinityConfig", 'must not be set when sessionAffinity is "None"')
        return
    client_ip = spec.session_affinity_config.client_ip
    if client_ip.HasField("timeout_seconds") and not 0 < client_ip.timeout_seconds <= MAX_AFFINITY_SECONDS:
        p.add(
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            f"must be greater than 0 and less than or equal to {MAX_AFFINITY_SECONDS}, got {client_ip.timeout_seconds}",
        )


def validate_cluster_ip(p: Problems, spec: service_pb2.ServiceSpec) -> bool:
    """clusterIP is "", "None" (headless) or an IPv4 address; clusterIPs agrees; True when headless.
    (Whether an address is in the Service range, and free, the allocator says.)"""
    if spec.cluster_ip not in ("", HEADLESS):
        try:
            address = ipaddress.ip_address(spec.cluster_ip)
        except ValueError:
            p.add("spec.clusterIP", f'must be "None", empty or a valid IP address, got "{spec.cluster_ip}"')
            return False
        if address.version != 4:
            p.add("spec.clusterIP", "must be an IPv4 address (corral's Services are IPv4 SingleStack)")
    if len(spec.cluster_ips) > 1:
        p.add("spec.clusterIPs", f"must have at most 1 item (IPv4 SingleStack), got {len(spec.cluster_ips)}")
    elif spec.cluster_ips and spec.cluster_ips[0] != spec.cluster_ip:
        p.add("spec.clusterIPs[0]", f'must match clusterIP "{spec.cluster_ip}", got "{spec.cluster_ips[0]}"')
    if spec.cluster_ip != HEADLESS:
        return False
    if spec.type != "ClusterIP":
        p.add("spec.clusterIP", f'may not be "None" for a Service of type "{spec.type}"')
    return True


def validate_service_update(p: Problems, old: service_pb2.ServiceSpec, new: service_pb2.ServiceSpec) -> None:
    if old.cluster_ip and new.cluster_ip != old.cluster_ip:
        p.add("spec.clusterIP", "field is immutable (delete and re-create the Service)")
