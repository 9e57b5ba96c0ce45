"""Validation of the kinds corral stores without acting on them: ServiceAccounts,
RBAC Roles and bindings, NetworkPolicies. Pure code: no I/O.

The rules are Kubernetes' (pkg/apis/rbac/validation, pkg/apis/networking/
validation), so that what Kubernetes accepts is accepted and a malformed
object is refused with its field path. `Problems` is validation's collector;
the selector and name checks are passed in by validation.py, which calls these.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from controlplane.apiserver.problems import Problems
from protos.corral.v1 import meta_pb2, networking_pb2, rbac_pb2

RBAC_GROUP = "rbac.authorization.k8s.io"
SUBJECT_KINDS = ("ServiceAccount", "User", "Group")
POLICY_TYPES = ("Ingress", "Egress")
POLICY_PROTOCOLS = ("TCP", "UDP", "SCTP")


SelectorCheck = Callable[[Problems, str, meta_pb2.LabelSelector], None]
NameCheck = Callable[[Problems, str, str], None]


def validate_rbac_name(p: Problems, path: str, name: str) -> None:
    """RBAC names are path segments (`system:aggregate-to-view` is valid), as in Kubernetes."""
    if not name:
        p.add(path, "required")
    elif name in (".", "..") or "/" in name or "%" in name:
        p.add(path, f'may not be "." or "..", nor contain "/" or "%", got "{name}"')


# -- RBAC -----------------------------------------------------------------------


def validate_rules(p: Problems, path: str, rules: list[rbac_pb2.PolicyRule], *, namespaced: bool) -> None:
    for i, rule in enumerate(rules):
        at = f"{path}[{i}]"
        if not rule.verbs:
            p.add(f"{at}.verbs", "required: at least one verb (get, list, watch, create, ...)")
        _non_empty_items(p, f"{at}.verbs", rule.verbs)
        _non_empty_items(p, f"{at}.resources", rule.resources)
        if rule.non_resource_urls:
            if namespaced:
                p.add(f"{at}.nonResourceURLs", "namespaced rules cannot apply to non-resource URLs")
            if rule.api_groups or rule.resources or rule.resource_names:
                p.add(f"{at}.nonResourceURLs", "rules cannot apply to both regular resources and non-resource URLs")
            continue
        if not rule.api_groups:
            p.add(
                f"{at}.apiGroups", 'required: resource rules must supply at least one api group ("" is the core group)'
            )
        if not rule.resources:
            p.add(f"{at}.resources", "required: resource rules must supply at least one resource")


def _non_empty_items(p: Problems, path: str, items: Iterable[str]) -> None:
    for i, item in enumerate(items):
        if not item:
            p.add(f"{path}[{i}]", "must not be empty")


def validate_cluster_role(p: Problems, role: rbac_pb2.ClusterRole, selector: SelectorCheck) -> None:
    validate_rules(p, "rules", list(role.rules), namespaced=False)
    if role.HasField("aggregation_rule"):
        selectors = role.aggregation_rule.cluster_role_selectors
        if not selectors:
            p.add("aggregationRule.clusterRoleSelectors", "required: at least one selector")
        for i, sel in enumerate(selectors):
            selector(p, f"aggregationRule.clusterRoleSelectors[{i}]", sel)


def validate_binding(
    p: Problems,
    binding: rbac_pb2.RoleBinding | rbac_pb2.ClusterRoleBinding,
    *,
    namespaced: bool,
    label_name: NameCheck,
) -> None:
    if not binding.HasField("role_ref"):
        p.add("roleRef", "required")
    else:
        ref = binding.role_ref
        if ref.api_group != RBAC_GROUP:
            p.add("roleRef.apiGroup", f'must be "{RBAC_GROUP}", got "{ref.api_group}"')
        p.one_of("roleRef.kind", ref.kind, ("Role", "ClusterRole") if namespaced else ("ClusterRole",))
        validate_rbac_name(p, "roleRef.name", ref.name)
    for i, subject in enumerate(binding.subjects):
        at = f"subjects[{i}]"
        p.one_of(f"{at}.kind", subject.kind, SUBJECT_KINDS)
        if subject.kind == "ServiceAccount":
            if subject.api_group:
                p.add(f"{at}.apiGroup", f'must be "" for a ServiceAccount, got "{subject.api_group}"')
            if subject.name:
                label_name(p, f"{at}.name", subject.name)
            else:
                p.add(f"{at}.name", "required")
            if not namespaced and not subject.namespace:
                p.add(f"{at}.namespace", "required for a ServiceAccount in a ClusterRoleBinding")
        elif subject.kind in ("User", "Group"):
            if subject.api_group != RBAC_GROUP:
                p.add(f"{at}.apiGroup", f'must be "{RBAC_GROUP}", got "{subject.api_group}"')
            if not subject.name:
                p.add(f"{at}.name", "required")


def validate_binding_update(
    p: Problems,
    old: rbac_pb2.RoleBinding | rbac_pb2.ClusterRoleBinding,
    new: rbac_pb2.RoleBinding | rbac_pb2.ClusterRoleBinding,
) -> None:
    if old.role_ref != new.role_ref:
        p.add("roleRef", "field is immutable: cannot change roleRef (delete and re-create the binding)")


# -- NetworkPolicy --------------------------------------------------------------


def validate_network_policy(
    p: Problems,
    spec: networking_pb2.NetworkPolicySpec,
    *,
    has_spec: bool,
    selector: SelectorCheck,
    port_name: NameCheck,
) -> None:
    """`selector` checks a label selector that may be empty ({} selects everything)."""
    if not has_spec or not spec.HasField("pod_selector"):
        p.add("spec.podSelector", "required ({} selects every pod of the namespace)")
    else:
        selector(p, "spec.podSelector", spec.pod_selector)
    seen: set[str] = set()
    for i, kind in enumerate(spec.policy_types):
        p.one_of(f"spec.policyTypes[{i}]", kind, POLICY_TYPES)
        if kind in seen:
            p.add(f"spec.policyTypes[{i}]", f'duplicate value "{kind}"')
        seen.add(kind)
    for i, ingress in enumerate(spec.ingress):
        at = f"spec.ingress[{i}]"
        _ports(p, f"{at}.ports", list(ingress.ports), port_name)
        _peers(p, f"{at}.from", list(getattr(ingress, "from")), selector)
    for i, egress in enumerate(spec.egress):
        at = f"spec.egress[{i}]"
        _ports(p, f"{at}.ports", list(egress.ports), port_name)
        _peers(p, f"{at}.to", list(egress.to), selector)


def _ports(p: Problems, path: str, ports: list[networking_pb2.NetworkPolicyPort], port_name: NameCheck) -> None:
    for i, port in enumerate(ports):
        at = f"{path}[{i}]"
        if port.protocol:
            p.one_of(f"{at}.protocol", port.protocol, POLICY_PROTOCOLS)
        which = port.port.WhichOneof("value")
        if which == "int_val":
            p.port(f"{at}.port", port.port.int_val)
        elif which == "str_val":
            port_name(p, f"{at}.port", port.port.str_val)
        if port.HasField("end_port"):
            if which != "int_val":
                p.add(f"{at}.endPort", "may only be set with a numeric port")
            elif port.end_port < port.port.int_val:
                p.add(f"{at}.endPort", f"must be >= port ({port.port.int_val}), got {port.end_port}")
            else:
                p.port(f"{at}.endPort", port.end_port)


def _peers(p: Problems, path: str, peers: list[networking_pb2.NetworkPolicyPeer], selector: SelectorCheck) -> None:
    for i, peer in enumerate(peers):
        at = f"{path}[{i}]"
        set_fields = [f for f in ("pod_selector", "namespace_selector", "ip_block") if peer.HasField(f)]
        if not set_fields:
            p.add(at, "must set podSelector, namespaceSelector or ipBlock")
        if peer.HasField("ip_block"):
            if len(set_fields) > 1:
                p.add(f"{at}.ipBlock", "may not be set together with podSelector or namespaceSelector")
            _ip_block(p, f"{at}.ipBlock", peer.ip_block)
        if peer.HasField("pod_selector"):
            selector(p, f"{at}.podSelector", peer.pod_selector)
        if peer.HasField("namespace_selector"):
            selector(p, f"{at}.namespaceSelector", peer.namespace_selector)


def _ip_block(p: Problems, path: str, block: networking_pb2.IPBlock) -> None:
    try:
        network = ipaddress.ip_network(block.cidr, strict=False)
    except ValueError:
        p.add(f"{path}.cidr", f'must be a CIDR such as "10.0.0.0/8", got "{block.cidr}"')
        return
    for i, text in enumerate(getattr(block, "except")):
        try:
            excluded = ipaddress.ip_network(text, strict=False)
        except ValueError:
            p.add(f"{path}.except[{i}]", f'must be a CIDR, got "{text}"')
            continue
        if excluded.version != network.version or not excluded.subnet_of(network):  # type: ignore[arg-type]
            p.add(f"{path}.except[{i}]", f'must be within cidr "{block.cidr}", got "{text}"')
