"""Validation of pod fields real manifests often carry, as Kubernetes validates them. Pure code.

- env[].valueFrom.fieldRef: the downward API paths the agent reads
  (`DOWNWARD_ENV_FIELDS`, and metadata.labels['k'] / metadata.annotations['k']),
  apiVersion v1.
- env[].valueFrom.resourceFieldRef: limits.* or requests.* of cpu, memory or
  ephemeral-storage; a divisor cpu takes (1, 1m) or memory takes (1, 1k … 1E,
  1Ki … 1Ei); a containerName, when given, names a container of the pod.
- dnsPolicy: ClusterFirst, ClusterFirstWithHostNet or Default (`protos.pod_dns`);
  None is refused: it needs dnsConfig, which corral does not take.
- hostAliases: an IP address and DNS subdomain names each; not with
  runtimeClassName process (its processes share the host's /etc/hosts).
- topologySpreadConstraints: maxSkew >= 1, a topologyKey, whenUnsatisfiable
  DoNotSchedule or ScheduleAnyway, minDomains >= 1 and only with DoNotSchedule,
  Honor or Ignore policies (stored; the scheduler does not act on them).
- imagePullSecrets: each names a Secret (stored; the agent pulls with its node's credentials).
- priorityClassName: a DNS subdomain name (stored; corral has no PriorityClasses).
- terminationMessagePolicy File or FallbackToLogsOnError, terminationMessagePath
  absolute (stored; corral writes no termination message).
- podAffinity / podAntiAffinity terms: a topologyKey and a valid label selector,
  weights 1-100; preferred node affinity: weights 1-100 and valid terms (stored;
  the scheduler acts on neither).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Final

from controlplane.apiserver.pod_security import PROCESS_RUNTIME
from controlplane.apiserver.problems import Problems
from protos.corral.v1 import meta_pb2, pod_pb2
from protos.pod_dns import DNS_POLICIES
from protos.pods import every_container
from protos.quantity import parse_quantity

DOWNWARD_ENV_FIELDS: Final = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.podIP",
)
_KEYED: Final = re.compile(r"^metadata\.(labels|annotations)\['[^']+'\]$")
ENV_RESOURCES: Final = tuple(
    f"{kind}.{name}" for kind in ("limits", "requests") for name in ("cpu", "memory", "ephemeral-storage")
)
CPU_DIVISORS: Final = ("1m", "1")
MEMORY_DIVISORS: Final = ("1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")
WHEN_UNSATISFIABLE: Final = ("DoNotSchedule", "ScheduleAnyway")
TERMINATION_MESSAGE_POLICIES: Final = ("File", "FallbackToLogsOnError")
_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


SelectorCheck = Callable[[Problems, str, meta_pb2.LabelSelector], None]
NodeTermCheck = Callable[[Problems, str, pod_pb2.NodeSelector], None]


def validate_field_ref(p: Problems, path: str, ref: pod_pb2.ObjectFieldSelector) -> None:
    """An env variable's fieldRef: a path the agent can read."""
    if ref.api_version not in ("", "v1"):
        p.add(f"{path}.apiVersion", f'must be "v1", got "{ref.api_version[:60]}"')
    if ref.field_path not in DOWNWARD_ENV_FIELDS and not _KEYED.match(ref.field_path):
        shown = ", ".join(f'"{f}"' for f in DOWNWARD_ENV_FIELDS)
        p.add(
            f"{path}.fieldPath",
            f"must be one of {shown}, metadata.labels['<key>'] or metadata.annotations['<key>'], "
            f'got "{ref.field_path[:120]}"',
        )


def validate_resource_field_ref(p: Problems, path: str, ref: pod_pb2.ResourceFieldSelector) -> None:
    """An env variable's resourceFieldRef: a resource the agent reads, a divisor Kubernetes allows for it."""
    if ref.resource not in ENV_RESOURCES:
        shown = ", ".join(f'"{r}"' for r in ENV_RESOURCES)
        p.add(f"{path}.resource", f'must be one of {shown}, got "{ref.resource[:60]}"')
        return
    if not ref.divisor:
        return
    allowed = CPU_DIVISORS if ref.resource.endswith(".cpu") else MEMORY_DIVISORS
    value = parse_quantity(ref.divisor)  # the codec admitted only quantities
    if all(parse_quantity(a) != value for a in allowed):
        shown = ", ".join(allowed)
        p.add(f"{path}.divisor", f"must be one of {shown} for {ref.resource}, got {ref.divisor[:60]}")


def validate_pod_fields(
    p: Problems, path: str, spec: pod_pb2.PodSpec, *, selector: SelectorCheck, node_terms: NodeTermCheck
) -> None:
    if spec.dns_policy == "None":
        p.add(f"{path}.dnsPolicy", 'unsupported value "None": corral takes no dnsConfig (use ClusterFirst or Default)')
    elif spec.dns_policy and spec.dns_policy not in DNS_POLICIES:
        shown = ", ".join(f'"{d}"' for d in DNS_POLICIES)
        p.add(f"{path}.dnsPolicy", f'must be one of {shown}, got "{spec.dns_policy[:60]}"')
    _host_aliases(p, path, spec)
    for i, constraint in enumerate(spec.topology_spread_constraints):
        _spread(p, f"{path}.topologySpreadConstraints[{i}]", constraint, selector)
    for i, secret in enumerate(spec.image_pull_secrets):
        if not secret.name:
            p.add(f"{path}.imagePullSecrets[{i}].name", "required")
    name = spec.priority_class_name
    if name and (len(name) > 253 or not _SUBDOMAIN.match(name)):
        p.add(f"{path}.priorityClassName", f'must be a DNS subdomain name, got "{name[:60]}"')
    names = {c.name for _, c in every_container(spec)}
    for where, c in every_container(spec):
        at = f"{path}.{where}"
        for i, env in enumerate(c.env):
            wanted = env.value_from.resource_field_ref.container_name
            if wanted and wanted not in names:
                p.add(f"{at}.env[{i}].valueFrom.resourceFieldRef.containerName", f'no container named "{wanted[:60]}"')
        if c.termination_message_policy and c.termination_message_policy not in TERMINATION_MESSAGE_POLICIES:
            shown = ", ".join(f'"{t}"' for t in TERMINATION_MESSAGE_POLICIES)
            got = c.termination_message_policy[:60]
            p.add(f"{at}.terminationMessagePolicy", f'must be one of {shown}, got "{got}"')
        if c.termination_message_path and not c.termination_message_path.startswith("/"):
            p.add(f"{at}.terminationMessagePath", "must be an absolute path")
    affinity = spec.affinity
    for i, preferred in enumerate(affinity.node_affinity.preferred_during_scheduling_ignored_during_execution):
        at = f"{path}.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
        _weight(p, f"{at}.weight", preferred.weight)
        found = Problems()
        node_terms(found, at, pod_pb2.NodeSelector(node_selector_terms=[preferred.preference]))
        for cause in found.causes:  # the term is the preference itself: no nodeSelectorTerms[0] in its path
            p.add(cause.field.replace(f"{at}.nodeSelectorTerms[0]", f"{at}.preference", 1), cause.message)
    for json_name, field in (("podAffinity", "pod_affinity"), ("podAntiAffinity", "pod_anti_affinity")):
        terms: pod_pb2.PodAffinity = getattr(affinity, field)
        base = f"{path}.affinity.{json_name}"
        for i, term in enumerate(terms.required_during_scheduling_ignored_during_execution):
            _affinity_term(p, f"{base}.requiredDuringSchedulingIgnoredDuringExecution[{i}]", term, selector)
        for i, weighted in enumerate(terms.preferred_during_scheduling_ignored_during_execution):
            at = f"{base}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
            _weight(p, f"{at}.weight", weighted.weight)
            _affinity_term(p, f"{at}.podAffinityTerm", weighted.pod_affinity_term, selector)


def _weight(p: Problems, path: str, weight: int) -> None:
    if not 1 <= weight <= 100:
        p.add(path, f"must be in the range 1-100, got {weight}")


def _affinity_term(p: Problems, path: str, term: pod_pb2.PodAffinityTerm, selector: SelectorCheck) -> None:
    if not term.topology_key:
        p.add(f"{path}.topologyKey", "required")
    if term.HasField("label_selector") and (term.label_selector.match_labels or term.label_selector.match_expressions):
        selector(p, f"{path}.labelSelector", term.label_selector)
    if term.HasField("namespace_selector") and (
        term.namespace_selector.match_labels or term.namespace_selector.match_expressions
    ):
        selector(p, f"{path}.namespaceSelector", term.namespace_selector)


def _host_aliases(p: Problems, path: str, spec: pod_pb2.PodSpec) -> None:
    if spec.host_aliases and spec.runtime_class_name == PROCESS_RUNTIME:
        p.add(f"{path}.hostAliases", "not supported with runtimeClassName process (it shares the host's /etc/hosts)")
    for i, alias in enumerate(spec.host_aliases):
        at = f"{path}.hostAliases[{i}]"
        try:
            ipaddress.ip_address(alias.ip)
        except ValueError:
            p.add(f"{at}.ip", f'must be a valid IP address, got "{alias.ip[:60]}"')
        for j, name in enumerate(alias.hostnames):
            if len(name) > 253 or not _SUBDOMAIN.match(name):
                p.add(f"{at}.hostnames[{j}]", f'must be a DNS subdomain name, got "{name[:60]}"')


def _spread(p: Problems, at: str, c: pod_pb2.TopologySpreadConstraint, selector: SelectorCheck) -> None:
    if c.max_skew < 1:
        p.add(f"{at}.maxSkew", f"must be greater than zero, got {c.max_skew}")
    if not c.topology_key:
        p.add(f"{at}.topologyKey", "required")
    if c.when_unsatisfiable not in WHEN_UNSATISFIABLE:
        shown = ", ".join(f'"{w}"' for w in WHEN_UNSATISFIABLE)
        p.add(f"{at}.whenUnsatisfiable", f'must be one of {shown}, got "{c.when_unsatisfiable[:60]}"')
    if c.HasField("min_domains"):
        if c.min_domains < 1:
            p.add(f"{at}.minDomains", f"must be greater than zero, got {c.min_domains}")
        elif c.when_unsatisfiable != "DoNotSchedule":
            p.add(f"{at}.minDomains", 'may only be set when whenUnsatisfiable is "DoNotSchedule"')
    for json_name, value in (
        ("nodeAffinityPolicy", c.node_affinity_policy),
        ("nodeTaintsPolicy", c.node_taints_policy),
    ):
        if value and value not in ("Honor", "Ignore"):
            p.add(f"{at}.{json_name}", f'must be one of "Honor", "Ignore", got "{value[:60]}"')
    if c.label_selector.match_labels or c.label_selector.match_expressions:
        selector(p, f"{at}.labelSelector", c.label_selector)
