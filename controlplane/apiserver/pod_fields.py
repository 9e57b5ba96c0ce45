"""Validation of pod fields real manifests often carry, as Kubernetes validates them. Pure code.

- env[].valueFrom.fieldRef: the downward API paths the agent reads
  (`DOWNWARD_ENV_FIELDS`, and metadata.labels['k'] / metadata.annotations['k']),
  apiVersion v1.
- dnsPolicy: ClusterFirst, ClusterFirstWithHostNet or Default (`protos.pod_dns`);
  None is refused: it needs dnsConfig, which corral does not take.
- priorityClassName: a DNS subdomain name (stored; corral has no PriorityClasses).
- terminationMessagePolicy File or FallbackToLogsOnError, terminationMessagePath
  absolute (stored; corral writes no termination message).
- podAffinity / podAntiAffinity terms: a topologyKey and a valid label selector,
  weights 1-100; preferred node affinity: weights 1-100 and valid terms (stored;
  the scheduler acts on neither).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from controlplane.apiserver.problems import Problems
from protos.corral.v1 import meta_pb2, pod_pb2
from protos.pod_dns import DNS_POLICIES
from protos.pods import every_container

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


def validate_pod_fields(
    p: Problems, path: str, spec: pod_pb2.PodSpec, *, selector: SelectorCheck, node_terms: NodeTermCheck
) -> None:
    if spec.dns_policy == "None":
        p.add(f"{path}.dnsPolicy", 'unsupported value "None": corral takes no dnsConfig (use ClusterFirst or Default)')
    elif spec.dns_policy and spec.dns_policy not in DNS_POLICIES:
        shown = ", ".join(f'"{d}"' for d in DNS_POLICIES)
        p.add(f"{path}.dnsPolicy", f'must be one of {shown}, got "{spec.dns_policy[:60]}"')
    name = spec.priority_class_name
    if name and (len(name) > 253 or not _SUBDOMAIN.match(name)):
        p.add(f"{path}.priorityClassName", f'must be a DNS subdomain name, got "{name[:60]}"')
    for where, c in every_container(spec):
        at = f"{path}.{where}"
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
