import pytest

from controlplane.apiserver import labels
from protos.corral.v1 import meta_pb2

LABELS = {"app": "web", "tier": "front", "env": "prod"}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param("", True, id="empty-matches-all"),
        pytest.param("app=web", True, id="equals"),
        pytest.param("app==web", True, id="double-equals"),
        pytest.param("app=api", False, id="equals-miss"),
        pytest.param("app!=api", True, id="not-equals"),
        pytest.param("missing!=x", True, id="not-equals-absent-key"),
        pytest.param("env in (prod,staging)", True, id="in"),
        pytest.param("env in (dev)", False, id="in-miss"),
        pytest.param("env notin (dev, staging)", True, id="notin"),
        pytest.param("env notin (prod)", False, id="notin-miss"),
        pytest.param("tier", True, id="exists"),
        pytest.param("!tier", False, id="not-exists-present"),
        pytest.param("!canary", True, id="not-exists"),
        pytest.param("app=web,tier!=db,env in (a,prod)", True, id="combined"),
        pytest.param("app=web,tier=db", False, id="combined-one-fails"),
    ],
)
def test_selector_matching(selector: str, expected: bool) -> None:
    assert labels.parse(selector).matches(LABELS) is expected


@pytest.mark.parametrize(
    "selector",
    [
        pytest.param("app=", id="empty-value-ok"),
    ],
)
def test_empty_value_is_allowed(selector: str) -> None:
    assert labels.parse(selector).matches({"app": ""})


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        pytest.param("app=web,", "empty term", id="trailing-comma"),
        pytest.param("env in (a,b", "unbalanced", id="unclosed-paren"),
        pytest.param("env in a,b)", "unbalanced", id="unopened-paren"),
        pytest.param("app=we b", "cannot parse", id="space-in-value"),
        pytest.param("env in (a,b c)", "invalid value", id="bad-set-value"),
        pytest.param("=web", "cannot parse", id="missing-key"),
    ],
)
def test_selector_errors(selector: str, message: str) -> None:
    with pytest.raises(labels.SelectorError, match=message):
        labels.parse(selector)


def test_label_selector_message() -> None:
    sel = meta_pb2.LabelSelector(
        match_labels={"app": "web"},
        match_expressions=[meta_pb2.LabelSelectorRequirement(key="env", operator="NotIn", values=["dev"])],
    )
    selector = labels.from_label_selector(sel)
    assert selector.matches({"app": "web", "env": "prod"})
    assert not selector.matches({"app": "web", "env": "dev"})
    assert not selector.matches({"app": "api"})
