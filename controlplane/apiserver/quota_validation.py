"""Validation of ResourceQuotas and LimitRanges. Pure code: no I/O.

The rules are Kubernetes' (pkg/apis/core/validation: ValidateResourceQuota,
ValidateLimitRange), limited to what corral enforces: a quota names resources
corral counts and scopes it can judge; a limit range names the types and
resources the LimitRanger checks. Quantities were parsed by the codec; they
are parsed again here for objects that did not come through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from controlplane.apiserver.problems import Problems
from protos import quota
from protos.corral.v1 import quota_pb2
from protos.quantity import parse_quantity

LIMIT_TYPES = ("Container", "Pod", "PersistentVolumeClaim")
CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
CLAIM_RESOURCES = ("storage",)
SCOPE_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def parsed(p: Problems, path: str, values: Mapping[str, str]) -> dict[str, Fraction]:
    """The quantities of a resource list; each one that is not a quantity is a cause."""
    amounts: dict[str, Fraction] = {}
    for name in sorted(values):
        try:
            amounts[name] = parse_quantity(values[name])
        except ValueError as e:
            p.add(f"{path}.{name}", str(e))
    return amounts


# -- ResourceQuota ------------------------------------------------------------------------


def validate_resource_quota(p: Problems, rq: quota_pb2.ResourceQuota) -> None:
    hard = parsed(p, "spec.hard", rq.spec.hard)
    for name in sorted(rq.spec.hard):
        at = f"spec.hard.{name}"
        if not quota.known_name(name):
            p.add(
                at,
                f'unknown resource "{name}" (known: {", ".join(quota.STANDARD_NAMES)}, count/<resource>.<group>, '
                f"<class>{quota.STORAGE_CLASS_SUFFIX}requests.storage)",
            )
        elif name in hard and quota.is_count(name) and hard[name].denominator != 1:
            p.add(at, f'must be an integer, got "{rq.spec.hard[name]}"')
    validate_scopes(p, rq.spec)


def validate_scopes(p: Problems, spec: quota_pb2.ResourceQuotaSpec) -> None:
    """Scopes corral can judge, without contradictions, on resources they can limit."""
    scopes: list[tuple[str, str]] = [(f"spec.scopes[{i}]", s) for i, s in enumerate(spec.scopes)]
    for i, expr in enumerate(spec.scope_selector.match_expressions):
        at = f"spec.scopeSelector.matchExpressions[{i}]"
        scopes.append((f"{at}.scopeName", expr.scope_name))
        if expr.operator not in SCOPE_OPERATORS:
            p.one_of(f"{at}.operator", expr.operator, SCOPE_OPERATORS)
        elif expr.operator != "Exists" and expr.scope_name in quota.SCOPES:
            p.add(f"{at}.operator", f'must be "Exists" when the scope is {expr.scope_name}, got "{expr.operator}"')
        if expr.values and expr.scope_name in quota.SCOPES:
            p.add(f"{at}.values", "must be empty when the operator is Exists")
    names = {s for _, s in scopes}
    for path, scope in scopes:
        if scope in quota.UNSUPPORTED_SCOPES:
            p.add(path, f'scope "{scope}" is not supported by corral (supported: {", ".join(quota.SCOPES)})')
        elif scope not in quota.SCOPES:
            p.add(path, f'unknown scope "{scope}" (supported: {", ".join(quota.SCOPES)})')
            continue
        for resource in sorted(spec.hard):
            if scope in quota.SCOPED_NAMES and resource not in quota.SCOPED_NAMES[scope]:
                p.add(
                    f"spec.hard.{resource}",
                    f"unsupported scope applied to resource: the {scope} scope can limit only "
                    f"{', '.join(quota.SCOPED_NAMES[scope])}",
                )
    for a, b in ((quota.TERMINATING, quota.NOT_TERMINATING), (quota.BEST_EFFORT, quota.NOT_BEST_EFFORT)):
        if a in names and b in names:
            p.add("spec.scopes", f"conflicting scopes: {a} and {b}")


# -- LimitRange ---------------------------------------------------------------------------


def validate_limit_range(p: Problems, lr: quota_pb2.LimitRange) -> None:
    seen: set[str] = set()
    for i, item in enumerate(lr.spec.limits):
        at = f"spec.limits[{i}]"
        if not item.type:
            p.add(f"{at}.type", f"required: one of {', '.join(LIMIT_TYPES)}")
            continue
        p.one_of(f"{at}.type", item.type, LIMIT_TYPES)
        if item.type in seen:
            p.add(f"{at}.type", f'duplicate type "{item.type}": each type may appear once')
        seen.add(item.type)
        validate_limit_item(p, at, item)


def validate_limit_item(p: Problems, at: str, item: quota_pb2.LimitRangeItem) -> None:
    known = CLAIM_RESOURCES if item.type == "PersistentVolumeClaim" else CONTAINER_RESOURCES
    parts = {
        "max": item.max,
        "min": item.min,
        "default": item.default,
        "defaultRequest": item.default_request,
        "maxLimitRequestRatio": item.max_limit_request_ratio,
    }
    amounts: dict[str, dict[str, Fraction]] = {}
    unknown: set[str] = set()  # each said once (defaulting copies max into default, ...)
    for part, values in parts.items():
        if item.type != "Container" and part in ("default", "defaultRequest") and values:
            p.add(f"{at}.{part}", f"may not be specified when `type` is '{item.type}'")
            continue
        for name in sorted(values):
            if name not in known and name not in unknown:
                unknown.add(name)
                p.add(f"{at}.{part}.{name}", f'unknown resource "{name}" for {item.type} (known: {", ".join(known)})')
        amounts[part] = parsed(p, f"{at}.{part}", values)
    if item.type == "PersistentVolumeClaim" and "storage" not in item.min and "storage" not in item.max:
        p.add(at, "either minimum or maximum storage value is required, but neither was provided")
    validate_limit_order(p, at, item, amounts)


def validate_limit_order(
    p: Problems, at: str, item: quota_pb2.LimitRangeItem, amounts: Mapping[str, Mapping[str, Fraction]]
) -> None:
    """min <= defaultRequest <= default <= max, and a ratio of at least 1 that max/min allows."""
    low, high = amounts.get("min", {}), amounts.get("max", {})
    request, limit = amounts.get("defaultRequest", {}), amounts.get("default", {})
    ratio = amounts.get("maxLimitRequestRatio", {})
    text = {
        "min": item.min,
        "max": item.max,
        "default": item.default,
        "defaultRequest": item.default_request,
        "maxLimitRequestRatio": item.max_limit_request_ratio,
    }
    checks = (
        ("min", low, "max", high, "min", "min value {a} is greater than max value {b}"),
        (
            "min",
            low,
            "defaultRequest",
            request,
            "defaultRequest",
            "min value {a} is greater than default request value {b}",
        ),
        (
            "defaultRequest",
            request,
            "max",
            high,
            "defaultRequest",
            "default request value {a} is greater than max value {b}",
        ),
        (
            "defaultRequest",
            request,
            "default",
            limit,
            "defaultRequest",
            "default request value {a} is greater than default limit value {b}",
        ),
        ("min", low, "default", limit, "default", "min value {a} is greater than default value {b}"),
        ("default", limit, "max", high, "default", "default value {a} is greater than max value {b}"),
    )
    names = sorted({name for values in amounts.values() for name in values})
    for name in names:
        for a_part, a, b_part, b, blame, message in checks:
            if name in a and name in b and a[name] > b[name]:
                shown = message.format(a=text[a_part][name], b=text[b_part][name])
                p.add(f"{at}.{blame}.{name}", shown)
        if name in ratio:
            if ratio[name] < 1:
                p.add(f"{at}.maxLimitRequestRatio.{name}", f"ratio {text['maxLimitRequestRatio'][name]} is less than 1")
            elif name in low and name in high and low[name] > 0 and ratio[name] > high[name] / low[name]:
                p.add(
                    f"{at}.maxLimitRequestRatio.{name}",
                    f"ratio {text['maxLimitRequestRatio'][name]} is greater than max/min = "
                    f"{float(high[name] / low[name]):f}",
                )
