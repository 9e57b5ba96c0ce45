"""ServiceAccounts, RBAC objects and NetworkPolicies as real manifests write them:
decoded, round-tripped, validated with field paths, warned about at apply;
autoscaling/v1 HPAs read as v2; hints only for the same meaning; names for delete -f."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.apiserver.defaults import apply_defaults
from controlplane.apiserver.validation import validate, validate_update
from corral.cli import describe, printers
from corral.manifest import Document, ManifestError, load_documents, load_names, parse_object
from protos import codec
from protos.corral.v1 import metrics_pb2, pod_pb2, rbac_pb2
from protos.kinds import KINDS, STORED_ONLY, by_kind, resolve

# What a Helm chart renders for an app with its own service account (the
# Prometheus node-exporter / ingress-nginx shape), and the Kubernetes docs'
# NetworkPolicy example (concepts/services-networking/network-policies).
CHART = """\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: web
  namespace: default
  labels: {app.kubernetes.io/name: web, helm.sh/chart: web-1.2.3}
automountServiceAccountToken: false
imagePullSecrets:
  - name: regcred
secrets:
  - name: web-token
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: web
  namespace: default
rules:
  - apiGroups: [""]
    resources: ["configmaps", "pods"]
    verbs: ["get", "list", "watch"]
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    resourceNames: ["web-leader"]
    verbs: ["get", "update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: web
  namespace: default
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: web
subjects:
  - kind: ServiceAccount
    name: web
    namespace: default
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:web-metrics
  labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}
rules:
  - apiGroups: ["metrics.k8s.io"]
    resources: ["pods", "nodes"]
    verbs: ["get", "list"]
  - nonResourceURLs: ["/metrics", "/healthz"]
    verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: web-aggregate
aggregationRule:
  clusterRoleSelectors:
    - matchLabels: {rbac.example.com/aggregate-to-web: "true"}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: web-metrics
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:web-metrics
subjects:
  - kind: ServiceAccount
    name: web
    namespace: default
  - kind: Group
    apiGroup: rbac.authorization.k8s.io
    name: system:authenticated
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
    - Ingress
    - Egress
  ingress:
    - from:
        - ipBlock:
            cidr: 172.17.0.0/16
            except:
              - 172.17.1.0/24
        - namespaceSelector:
            matchLabels:
              project: myproject
        - podSelector:
            matchLabels:
              role: frontend
      ports:
        - protocol: TCP
          port: 6379
  egress:
    - to:
        - ipBlock:
            cidr: 10.0.0.0/24
      ports:
        - protocol: TCP
          port: 32000
          endPort: 32768
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-all
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
"""


def _docs(text: str = CHART) -> list[Document]:
    return load_documents("chart.yaml", text.encode())


def _valid(data: dict[str, Any]) -> tuple[Any, Any]:
    info = by_kind(data["kind"])
    message, errors = codec.from_dict(data, info.message)
    assert errors == []
    apply_defaults(info, message)
    return info, message


def _causes(data: dict[str, Any]) -> list[str]:
    info, message = _valid(data)
    return [str(c) for c in validate(info, message)]


def test_a_charts_objects_decode_round_trip_and_validate() -> None:
    docs = _docs()
    kinds = []
    for doc in docs:
        parsed = parse_object(doc)
        kinds.append(parsed.info.kind)
        assert codec.to_dict(parsed.message) == doc.data
        assert _causes(doc.data) == []
    assert kinds == [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "NetworkPolicy",
        "NetworkPolicy",
    ]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        pytest.param("sa", "ServiceAccount", id="sa"),
        pytest.param("serviceaccounts", "ServiceAccount", id="serviceaccounts"),
        pytest.param("roles.rbac.authorization.k8s.io", "Role", id="roles-qualified"),
        pytest.param("clusterroles", "ClusterRole", id="clusterroles"),
        pytest.param("rolebinding", "RoleBinding", id="rolebinding"),
        pytest.param("clusterrolebindings", "ClusterRoleBinding", id="clusterrolebindings"),
        pytest.param("netpol", "NetworkPolicy", id="netpol"),
    ],
)
def test_kind_names_resolve(name: str, kind: str) -> None:
    assert resolve(name).kind == kind


def test_each_stored_kind_gets_one_warning_at_apply() -> None:
    for doc in _docs():
        parsed = parse_object(doc)
        assert len(parsed.warnings) == 1
        assert STORED_ONLY[parsed.info.kind] in str(parsed.warnings[0])
    first = parse_object(_docs()[0])
    assert str(first.warnings[0]) == (
        "chart.yaml[0]: ServiceAccount web: stored only: corral mounts no service account token "
        "into pods and gives pods no API access"
    )
    assert "not enforced" in STORED_ONLY["NetworkPolicy"]
    assert "not enforced" in STORED_ONLY["ClusterRoleBinding"]


def _deployment(**pod: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "httpd:2.4.39"}], **pod},
            },
        },
    }


@pytest.mark.parametrize(
    ("pod", "path"),
    [
        pytest.param({"serviceAccountName": "web"}, "spec.template.spec.serviceAccountName", id="name"),
        pytest.param({"serviceAccount": "web"}, "spec.template.spec.serviceAccount", id="deprecated-alias"),
        pytest.param(
            {"automountServiceAccountToken": False}, "spec.template.spec.automountServiceAccountToken", id="automount"
        ),
        pytest.param(
            {"serviceAccountName": "web", "automountServiceAccountToken": True},
            "spec.template.spec.serviceAccountName",
            id="both-one-line",
        ),
    ],
)
def test_pod_service_account_fields_are_accepted_with_a_warning(pod: dict[str, Any], path: str) -> None:
    parsed = parse_object(Document("web.yaml", 0, _deployment(**pod)))
    assert [str(w) for w in parsed.warnings] == [
        f"web.yaml[0] {path}: accepted and stored; corral mounts no service account token into pods "
        "(no /var/run/secrets/kubernetes.io/serviceaccount) and gives them no API access"
    ]
    assert codec.to_dict(parsed.message) == _deployment(**pod)
    assert _causes(_deployment(**pod)) == []


def test_a_bare_pods_service_account_is_warned_about() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"serviceAccountName": "x"}}
    parsed = parse_object(Document("p.yaml", 0, pod))
    assert isinstance(parsed.message, pod_pb2.Pod)
    assert [w.path for w in parsed.warnings] == ["spec.serviceAccountName"]


def test_a_deployment_without_them_has_no_warning() -> None:
    assert parse_object(Document("web.yaml", 0, _deployment())).warnings == []


_RB = {"apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": "b", "namespace": "default"}}
_REF = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}


def _binding(kind: str = "RoleBinding", **fields: Any) -> dict[str, Any]:
    return {**_RB, "kind": kind, **fields}


def _role(*rules: dict[str, Any], kind: str = "Role") -> dict[str, Any]:
    return {**_RB, "kind": kind, "metadata": {"name": "r", "namespace": "default"}, "rules": list(rules)}


def _netpol(**spec: Any) -> dict[str, Any]:
    base = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "np"}}
    return {**base, "spec": spec}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            _role({"apiGroups": [""], "resources": ["pods"]}),
            ["rules[0].verbs: required: at least one verb (get, list, watch, create, ...)"],
            id="role-no-verbs",
        ),
        pytest.param(
            _role({"resources": ["pods"], "verbs": ["get"]}),
            ['rules[0].apiGroups: required: resource rules must supply at least one api group ("" is the core group)'],
            id="role-no-api-groups",
        ),
        pytest.param(
            _role({"apiGroups": [""], "verbs": ["get"]}),
            ["rules[0].resources: required: resource rules must supply at least one resource"],
            id="role-no-resources",
        ),
        pytest.param(
            _role({"nonResourceURLs": ["/metrics"], "verbs": ["get"]}),
            ["rules[0].nonResourceURLs: namespaced rules cannot apply to non-resource URLs"],
            id="role-non-resource-url",
        ),
        pytest.param(
            _role({"nonResourceURLs": ["/metrics"], "resources": ["pods"], "verbs": ["get"]}, kind="ClusterRole"),
            ["rules[0].nonResourceURLs: rules cannot apply to both regular resources and non-resource URLs"],
            id="clusterrole-both",
        ),
        pytest.param(
            _role({"apiGroups": [""], "resources": ["pods", ""], "verbs": ["get"]}),
            ["rules[0].resources[1]: must not be empty"],
            id="role-empty-resource",
        ),
        pytest.param(_binding(), ["roleRef: required"], id="binding-no-roleref"),
        pytest.param(
            _binding(roleRef={**_REF, "apiGroup": "rbac"}, subjects=[]),
            ['roleRef.apiGroup: must be "rbac.authorization.k8s.io", got "rbac"'],
            id="roleref-group",
        ),
        pytest.param(
            _binding("ClusterRoleBinding", roleRef=_REF),
            ['roleRef.kind: must be one of "ClusterRole", got "Role"'],
            id="clusterrolebinding-to-role",
        ),
        pytest.param(
            _binding(roleRef={**_REF, "name": ""}),
            ["roleRef.name: required"],
            id="roleref-name",
        ),
        pytest.param(
            _binding(roleRef=_REF, subjects=[{"kind": "Robot", "name": "r2"}]),
            ['subjects[0].kind: must be one of "ServiceAccount", "User", "Group", got "Robot"'],
            id="subject-kind",
        ),
        pytest.param(
            _binding(
                "ClusterRoleBinding",
                roleRef={**_REF, "kind": "ClusterRole"},
                subjects=[{"kind": "ServiceAccount", "name": "web"}],
            ),
            ["subjects[0].namespace: required for a ServiceAccount in a ClusterRoleBinding"],
            id="subject-sa-namespace",
        ),
        pytest.param(
            _binding(roleRef=_REF, subjects=[{"kind": "ServiceAccount", "name": "Web_1"}]),
            ['subjects[0].name: must be a DNS-1123 subdomain (lower case letters, digits, "-", .), got "Web_1"'],
            id="subject-sa-name",
        ),
        pytest.param(
            _binding(roleRef=_REF, subjects=[{"kind": "User", "apiGroup": "x.io", "name": "jane"}]),
            ['subjects[0].apiGroup: must be "rbac.authorization.k8s.io", got "x.io"'],
            id="subject-user-group",
        ),
        pytest.param(
            {**_role(kind="ClusterRole"), "metadata": {"name": "a/b"}},
            ['metadata.name: may not be "." or "..", nor contain "/" or "%", got "a/b"'],
            id="rbac-name",
        ),
        pytest.param(
            _netpol(), ["spec.podSelector: required ({} selects every pod of the namespace)"], id="np-selector"
        ),
        pytest.param(
            _netpol(podSelector={}, policyTypes=["Ingress", "Inbound", "Ingress"]),
            [
                'spec.policyTypes[1]: must be one of "Ingress", "Egress", got "Inbound"',
                'spec.policyTypes[2]: duplicate value "Ingress"',
            ],
            id="np-policy-types",
        ),
        pytest.param(
            _netpol(podSelector={}, ingress=[{"ports": [{"protocol": "tcp", "port": 70000}]}]),
            [
                'spec.ingress[0].ports[0].protocol: must be one of "TCP", "UDP", "SCTP", got "tcp"',
                "spec.ingress[0].ports[0].port: must be 1-65535, got 70000",
            ],
            id="np-port",
        ),
        pytest.param(
            _netpol(podSelector={}, egress=[{"ports": [{"port": "dns", "endPort": 60}, {"port": 80, "endPort": 79}]}]),
            [
                "spec.egress[0].ports[0].endPort: may only be set with a numeric port",
                "spec.egress[0].ports[1].endPort: must be >= port (80), got 79",
            ],
            id="np-end-port",
        ),
        pytest.param(
            _netpol(
                podSelector={},
                ingress=[
                    {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}, "podSelector": {}}, {}]}
                ],
            ),
            [
                "spec.ingress[0].from[0].ipBlock: may not be set together with podSelector or namespaceSelector",
                'spec.ingress[0].from[0].ipBlock.except[0]: must be within cidr "10.0.0.0/8", got "11.0.0.0/16"',
                "spec.ingress[0].from[1]: must set podSelector, namespaceSelector or ipBlock",
            ],
            id="np-peers",
        ),
        pytest.param(
            _netpol(
                podSelector={"matchExpressions": [{"key": "app", "operator": "Is"}]},
                egress=[{"to": [{"ipBlock": {"cidr": "ten"}}]}],
            ),
            [
                "spec.podSelector.matchExpressions[0].operator: "
                'must be one of "In", "NotIn", "Exists", "DoesNotExist", got "Is"',
                'spec.egress[0].to[0].ipBlock.cidr: must be a CIDR such as "10.0.0.0/8", got "ten"',
            ],
            id="np-selector-and-cidr",
        ),
    ],
)
def test_validation_names_the_field(data: dict[str, Any], expected: list[str]) -> None:
    assert _causes(data) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            _role({"apiGroups": [""], "resources": "pods", "verbs": ["get", 3]}),
            [
                'web.yaml[0] rules[0].resources: expected a list, got string "pods"',
                "web.yaml[0] rules[0].verbs[1]: expected a string, got integer 3",
            ],
            id="rule-lists-of-strings",
        ),
        pytest.param(
            _binding(roleRef={**_REF, "namespace": "x"}),
            ['web.yaml[0] roleRef.namespace: unknown field "namespace"'],
            id="roleref-fields",
        ),
        pytest.param(
            _netpol(podSelector={}, ingress=[{"from": [], "port": 80}]),
            ['web.yaml[0] spec.ingress[0].port: unknown field "port" (did you mean "ports"?)'],
            id="np-typo-hinted",
        ),
    ],
)
def test_decoding_problems_name_the_field(data: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_object(Document("web.yaml", 0, data))
    assert [str(p) for p in caught.value.problems] == expected


def test_role_ref_is_immutable_and_subjects_are_not() -> None:
    info, old = _valid(_binding(roleRef=_REF, subjects=[{"kind": "User", "name": "jane"}]))
    _, same_ref = _valid(_binding(roleRef=_REF, subjects=[]))
    _, other_ref = _valid(_binding(roleRef={**_REF, "name": "other"}))
    assert validate_update(info, old, same_ref) == []
    assert [str(c) for c in validate_update(info, old, other_ref)] == [
        "roleRef: field is immutable: cannot change roleRef (delete and re-create the binding)"
    ]
    assert isinstance(old, rbac_pb2.RoleBinding)
    assert old.subjects[0].api_group == "rbac.authorization.k8s.io"  # defaulted, as Kubernetes does


# -- autoscaling/v1 -------------------------------------------------------------

_HPA_V1 = {
    "apiVersion": "autoscaling/v1",
    "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "php-apache"},
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "php-apache"},
        "minReplicas": 1,
        "maxReplicas": 10,
        "targetCPUUtilizationPercentage": 50,
    },
    "status": {"currentReplicas": 1, "desiredReplicas": 1},
}


def test_a_v1_hpa_is_read_as_v2_with_a_cpu_utilization_metric() -> None:
    parsed = parse_object(Document("hpa.yaml", 0, _HPA_V1))
    assert isinstance(parsed.message, metrics_pb2.HorizontalPodAutoscaler)
    assert codec.to_dict(parsed.message) == {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "php-apache"},
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "php-apache", "apiVersion": "apps/v1"},
            "minReplicas": 1,
            "maxReplicas": 10,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
                }
            ],
        },
    }
    assert _HPA_V1["apiVersion"] == "autoscaling/v1"  # the document is not changed
    assert _causes(codec.to_dict(parsed.message)) == []


def test_a_v1_hpa_without_a_target_gets_v2s_default() -> None:
    spec = {k: v for k, v in _HPA_V1["spec"].items() if k != "targetCPUUtilizationPercentage"}
    parsed = parse_object(Document("hpa.yaml", 0, {**_HPA_V1, "spec": spec}))
    assert isinstance(parsed.message, metrics_pb2.HorizontalPodAutoscaler)
    assert list(parsed.message.spec.metrics) == []  # defaulted to cpu at 80% on the server, as v1's default


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            {"maxReplicas": 3, "targetCPUUtilizationPercentage": "50%"},
            'hpa.yaml[0] spec.targetCPUUtilizationPercentage: expected an integer, got string "50%"',
            id="percent-as-text",
        ),
        pytest.param(
            {"maxReplicas": 3, "metrics": []},
            'hpa.yaml[0] spec.metrics: unknown field "metrics" (autoscaling/v1 has targetCPUUtilizationPercentage; '
            "metrics is autoscaling/v2)",
            id="v2-field-in-v1",
        ),
    ],
)
def test_v1_hpa_problems(spec: dict[str, Any], expected: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_object(Document("hpa.yaml", 0, {**_HPA_V1, "spec": spec}))
    assert [str(p) for p in caught.value.problems] == [expected]


# -- hints ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            {"apiVersion": "v1", "kind": "ServiceAcount"},
            'x.yaml[0] kind: unknown kind "ServiceAcount" (did you mean "ServiceAccount"?)',
            id="kind-typo",
        ),
        pytest.param(
            {"apiVersion": "stable.example.com/v1", "kind": "CronTab"},
            'x.yaml[0] kind: unknown kind "CronTab" (known kinds: ',
            id="kind-no-false-hint",
        ),
    ],
)
def test_kind_hints(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_object(Document("x.yaml", 0, data))
    assert str(caught.value.problems[0]).startswith(expected)


@pytest.mark.parametrize(
    ("typed", "names", "hint"),
    [
        pytest.param("fsGroup", ["runAsUser", "runAsGroup", "runAsNonRoot"], None, id="fsGroup-is-not-runAsGroup"),
        pytest.param("podAffinity", ["nodeAffinity"], None, id="podAffinity-is-not-nodeAffinity"),
        pytest.param("loadBalancerIP", ["loadBalancing", "clusterIP"], None, id="loadBalancerIP-is-not-loadBalancing"),
        pytest.param("ServiceAccount", ["Service", "Secret"], None, id="ServiceAccount-is-not-Service"),
        pytest.param("hostPort", ["hostPath"], None, id="hostPort-is-not-hostPath"),
        pytest.param("replica", ["replicas", "selector"], "replicas", id="plural"),
        pytest.param("Deploymnet", ["Deployment", "Pod"], "Deployment", id="transposed"),
        pytest.param("imagePulPolicy", ["imagePullPolicy", "image"], "imagePullPolicy", id="letter-dropped"),
        pytest.param("conatinerPort", ["containerPort", "hostPort"], "containerPort", id="camel-typo"),
    ],
)
def test_hints_only_where_the_meaning_is_the_same(typed: str, names: list[str], hint: str | None) -> None:
    assert codec.close_name(typed, names) == hint


def test_pod_fields_of_other_features_get_no_hint() -> None:
    _, errors = codec.from_dict({"securityContext": {"sysctls": []}, "overhead": {}}, pod_pb2.PodSpec)
    assert [str(e) for e in errors] == [
        'securityContext.sysctls: unknown field "sysctls"',
        'overhead: unknown field "overhead"',
    ]


# -- delete -f -------------------------------------------------------------------


def test_delete_names_what_an_invalid_file_names_and_skips_the_rest(tmp_path: Path) -> None:
    docs = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"replicas": "three"},
        },
        {"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "web-config"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"labels": {"a": "b"}}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "r"},
            "rules": "all",
        },
    ]
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    names, skipped = load_names([str(path)])
    assert [(n.index, n.info.kind, n.namespace, n.name) for n in names] == [
        (0, "Deployment", "shop", "web"),
        (3, "ClusterRole", "", "r"),
    ]
    assert [str(p) for p in skipped] == [
        f'{path}[1] kind: unknown kind "CronTab" (known kinds: ' + ", ".join(info.kind for info in KINDS) + ")",
        f"{path}[2] metadata.name: expected a name, got null",
    ]


# -- get and describe ------------------------------------------------------------


def test_get_rows_and_describe() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    objects = {}
    for doc in _docs():
        info, message = _valid(doc.data)
        message.metadata.creation_timestamp.FromDatetime(datetime(2026, 12, 7, 11, 0, tzinfo=UTC))
        objects[(info.kind, message.metadata.name)] = (info, message)
    rows = {
        key: printers.table_row(info, message, now, wide=False, all_namespaces=False)
        for key, (info, message) in objects.items()
    }
    assert rows[("ServiceAccount", "web")] == ["web", "1", "60m"]
    assert rows[("Role", "web")] == ["web", "2026-12-07T11:00:00Z"]
    assert rows[("RoleBinding", "web")] == ["web", "Role/web", "60m"]
    assert rows[("ClusterRoleBinding", "web-metrics")] == ["web-metrics", "ClusterRole/system:web-metrics", "60m"]
    assert rows[("NetworkPolicy", "test-network-policy")] == ["test-network-policy", "role=db", "60m"]
    assert rows[("NetworkPolicy", "default-deny-all")] == ["default-deny-all", "<none>", "60m"]
    info, binding = objects[("ClusterRoleBinding", "web-metrics")]
    assert printers.table_headers(info, wide=True, all_namespaces=False) == [
        "NAME",
        "ROLE",
        "AGE",
        "USERS",
        "GROUPS",
        "SERVICEACCOUNTS",
    ]
    assert printers.table_row(info, binding, now, wide=True, all_namespaces=False)[3:] == [
        "",
        "system:authenticated",
        "default/web",
    ]
    text = describe.describe(objects[("NetworkPolicy", "test-network-policy")][1], [], now)
    assert f"Corral:             {STORED_ONLY['NetworkPolicy']}" in text
    assert "cidr: 172.17.0.0/16" in text
    text = describe.describe(objects[("Role", "web")][1], [], now)
    assert "- configmaps" in text


# -- server defaults -------------------------------------------------------------


@pytest.mark.parametrize(
    ("pod", "name", "alias"),
    [
        pytest.param({"serviceAccount": "old"}, "old", "old", id="alias-read-as-name"),
        pytest.param({"serviceAccountName": "new", "serviceAccount": "old"}, "new", "new", id="name-wins"),
        pytest.param({"serviceAccountName": "new"}, "new", "", id="name-alone"),
    ],
)
def test_the_deprecated_service_account_alias(pod: dict[str, Any], name: str, alias: str) -> None:
    _, deployment = _valid(_deployment(**pod))
    spec = deployment.spec.template.spec
    assert (spec.service_account_name, spec.service_account) == (name, alias)


def test_a_service_account_name_is_a_dns_subdomain() -> None:
    assert _causes(_deployment(serviceAccountName="Web_SA")) == [
        'spec.template.spec.serviceAccountName: must be a DNS-1123 subdomain (lower case letters, digits, "-", .), '
        'got "Web_SA"'
    ]


@pytest.mark.parametrize(
    ("spec", "types"),
    [
        pytest.param({"podSelector": {}}, ["Ingress"], id="no-rules"),
        pytest.param({"podSelector": {}, "egress": [{}]}, ["Ingress", "Egress"], id="egress-rules"),
        pytest.param({"podSelector": {}, "policyTypes": ["Egress"]}, ["Egress"], id="written"),
    ],
)
def test_policy_types_default_as_in_kubernetes(spec: dict[str, Any], types: list[str]) -> None:
    _, policy = _valid(_netpol(**spec))
    assert list(policy.spec.policy_types) == types
