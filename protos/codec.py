"""Kubernetes-shaped dicts to protobuf messages and back, strictly and with paths.

Users write Kubernetes YAML; the object model is protobuf. This module is the
one translation between the two, generic over message descriptors:

* `to_dict(message)` gives the Kubernetes JSON shape: camelCase `json_name`
  keys in declaration order, empty values left out the way Kubernetes'
  `omitempty` leaves them out (a proto3 `optional` field that is set is shown
  even at zero, so `replicas: 0` survives), `IntOrString` as a plain int or
  string, timestamps as RFC 3339 (`"2026-11-27T16:29:48Z"`), int64 as a JSON int.
* `from_dict(data, Kind)` is the strict reverse. It never raises for bad input
  and never stops at the first problem: it returns the message it could build
  and every `FieldError`, each naming the field by its path, such as
  `spec.template.spec.containers[0].ports[0].containerPort`.

The rules `from_dict` applies are Kubernetes' strict decoding: unknown fields
are errors (with a "did you mean" hint), only the camelCase name is accepted,
strings are only strings, booleans only booleans, integers must fit their
width, a `null` anywhere means "not set". Null items in lists are skipped too;
reported indexes stay the ones the user wrote.

Two value types are special: `corral.v1.IntOrString` (an int or a string; one
with neither member set is left out by `to_dict`, like an unset one) and
`google.protobuf.Timestamp` (RFC 3339). The maps named in `QUANTITY_MAP_FIELDS`
and the string fields in `QUANTITY_FIELDS` hold Kubernetes quantities: they
accept numbers as well as strings, store the text, and refuse what is not a
quantity.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from functools import cache
from typing import Any, Final, TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from protos.corral.v1.meta_pb2 import IntOrString
from protos.quantity import parse_quantity

__all__ = [
    "NOT_SUPPORTED_FIELDS",
    "QUANTITY_FIELDS",
    "QUANTITY_MAP_FIELDS",
    "FieldError",
    "close_name",
    "describe",
    "from_dict",
    "to_dict",
]

# map<string, string> fields whose values are Kubernetes quantities.
QUANTITY_MAP_FIELDS: Final = frozenset(
    {
        "corral.v1.ResourceRequirements.requests",
        "corral.v1.ResourceRequirements.limits",
        "corral.v1.NodeStatus.capacity",
        "corral.v1.NodeStatus.allocatable",
        "corral.v1.ResourceQuotaSpec.hard",
        "corral.v1.ResourceQuotaStatus.hard",
        "corral.v1.ResourceQuotaStatus.used",
        "corral.v1.LimitRangeItem.max",
        "corral.v1.LimitRangeItem.min",
        "corral.v1.LimitRangeItem.default",
        "corral.v1.LimitRangeItem.default_request",
        "corral.v1.LimitRangeItem.max_limit_request_ratio",
        "corral.v1.VolumeResourceRequirements.requests",
        "corral.v1.VolumeResourceRequirements.limits",
        "corral.v1.PersistentVolumeSpec.capacity",
        "corral.v1.PersistentVolumeClaimStatus.capacity",
    }
)

# string fields that hold one Kubernetes quantity (a number or a string in YAML).
QUANTITY_FIELDS: Final = frozenset(
    {
        "corral.v1.MetricTarget.average_value",
        "corral.v1.MetricTarget.value",
        "corral.v1.MetricValueStatus.average_value",
        "corral.v1.MetricValueStatus.value",
        "corral.v1.EmptyDirVolumeSource.size_limit",
        "corral.v1.ResourceFieldSelector.divisor",
    }
)


# Kubernetes fields corral has no place for yet, refused with why rather than as unknown:
# (message full name, json name) → the error.
# Kubernetes' network and cloud volume sources: corral's volumes are node-local.
_REMOTE_VOLUMES = (
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "iscsi",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
)
_REMOTE_VOLUME_NOTE = (
    "not supported: corral's volumes are node-local (emptyDir, hostPath, configMap, secret, projected, "
    "and persistentVolumeClaim on the local-path provisioner or a hand-made local volume)"
)
_REMOTE_PV_NOTE = "not supported: corral's persistent volumes are directories on a node (hostPath or local)"
NOT_SUPPORTED_FIELDS: Final[dict[tuple[str, str], str]] = {
    **{("corral.v1.Volume", name): _REMOTE_VOLUME_NOTE for name in _REMOTE_VOLUMES},
    **{("corral.v1.PersistentVolumeSpec", name): _REMOTE_PV_NOTE for name in _REMOTE_VOLUMES},
}

M = TypeVar("M", bound=Message)

_FD = FieldDescriptor
_SIGNED_32 = (-(2**31), 2**31 - 1, "32 bits")
_UNSIGNED_32 = (0, 2**32 - 1, "32 bits")
_SIGNED_64 = (-(2**63), 2**63 - 1, "64 bits")
_UNSIGNED_64 = (0, 2**64 - 1, "64 bits")
_INT_RANGES: Final[dict[int, tuple[int, int, str]]] = {
    _FD.TYPE_INT32: _SIGNED_32,
    _FD.TYPE_SINT32: _SIGNED_32,
    _FD.TYPE_SFIXED32: _SIGNED_32,
    _FD.TYPE_UINT32: _UNSIGNED_32,
    _FD.TYPE_FIXED32: _UNSIGNED_32,
    _FD.TYPE_INT64: _SIGNED_64,
    _FD.TYPE_SINT64: _SIGNED_64,
    _FD.TYPE_SFIXED64: _SIGNED_64,
    _FD.TYPE_UINT64: _UNSIGNED_64,
    _FD.TYPE_FIXED64: _UNSIGNED_64,
}

_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_INT_KEY: Final = re.compile(r"-?[0-9]{1,20}")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS: Final = -62135596800
_MAX_SECONDS: Final = 253402300799
_TIMESTAMP_EXAMPLE: Final = '"2026-11-27T16:29:48Z"'


class _Invalid:
    """The result of a conversion that failed (its error is already recorded)."""


_INVALID: Final = _Invalid()


@dataclass(frozen=True)
class FieldError:
    """One problem with one field; `path` is empty for the object itself."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


# --------------------------------------------------------------------------
# message -> dict


def to_dict(message: Message) -> dict[str, Any]:
    """The Kubernetes JSON shape of a message (see the module docstring)."""
    out: dict[str, Any] = {}
    for field in _fields_by_json_name(message.DESCRIPTOR).values():
        if not _is_set(message, field):
            continue
        value = _field_to_json(field, getattr(message, field.name))
        if value is not None:
            out[field.json_name] = value
    return out


def _is_set(message: Message, field: FieldDescriptor) -> bool:
    if field.is_repeated:
        return len(getattr(message, field.name)) > 0
    if field.has_presence:
        return message.HasField(field.name)
    return bool(getattr(message, field.name) != field.default_value)


def _field_to_json(field: FieldDescriptor, value: Any) -> Any:
    if _is_map(field):
        value_field = _entry_field(field, "value")
        return {key: _value_to_json(value_field, value[key]) for key in sorted(value)}
    if field.is_repeated:
        return [_value_to_json(field, item) for item in value]
    return _value_to_json(field, value)


def _value_to_json(field: FieldDescriptor, value: Any) -> Any:
    if isinstance(value, IntOrString):
        return _int_or_string_to_json(value)
    if isinstance(value, Timestamp):
        return value.ToJsonString()
    if isinstance(value, Message):
        return to_dict(value)
    if field.type == _FD.TYPE_ENUM:
        enum = field.enum_type
        number = enum.values_by_number.get(value) if enum is not None else None
        return number.name if number is not None else value
    if field.type == _FD.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    return value


def _int_or_string_to_json(value: IntOrString) -> int | str | None:
    which = value.WhichOneof("value")
    if which == "int_val":
        return value.int_val
    if which == "str_val":
        return value.str_val
    return None


# --------------------------------------------------------------------------
# dict -> message


def from_dict(data: Any, message_cls: type[M], *, path: str = "") -> tuple[M, list[FieldError]]:
    """Build a `message_cls` from a Kubernetes-shaped dict.

    Returns the message and every problem found (an empty list when the input
    is valid). Paths are json names joined under `path`.
    """
    message = message_cls()
    errors: list[FieldError] = []
    _fill(message, data, path, errors)
    return message, errors


def _fill(target: Message, value: Any, path: str, errors: list[FieldError]) -> None:
    """Set `target` (a fresh or empty message) from a JSON-shaped value."""
    if isinstance(target, IntOrString):
        _fill_int_or_string(target, value, path, errors)
    elif isinstance(target, Timestamp):
        _fill_timestamp(target, value, path, errors)
    else:
        _fill_object(target, value, path, errors)


def _fill_object(message: Message, data: Any, path: str, errors: list[FieldError]) -> None:
    if not isinstance(data, Mapping):
        errors.append(FieldError(path, f"expected an object, got {describe(data)}"))
        return
    fields = _fields_by_json_name(message.DESCRIPTOR)
    oneofs: dict[str, str] = {}
    for key, value in data.items():
        child = _join(path, str(key))
        field = fields.get(key) if isinstance(key, str) else None
        if field is None:
            refused = NOT_SUPPORTED_FIELDS.get((message.DESCRIPTOR.full_name, str(key)))
            errors.append(FieldError(child, refused or _unknown_field(str(key), fields)))
        elif value is not None and _oneof_free(field, oneofs, child, errors):
            _set_field(message, field, value, child, errors)


def _oneof_free(
    field: FieldDescriptor,
    taken: dict[str, str],
    path: str,
    errors: list[FieldError],
) -> bool:
    """False (and an error) when another member of the field's oneof is set."""
    oneof = field.containing_oneof
    if oneof is None:
        return True
    other = taken.setdefault(oneof.name, field.json_name)
    if other == field.json_name:
        return True
    errors.append(FieldError(path, f'cannot be set together with "{other}"'))
    return False


def _set_field(
    message: Message,
    field: FieldDescriptor,
    value: Any,
    path: str,
    errors: list[FieldError],
) -> None:
    if _is_map(field):
        _set_map(message, field, value, path, errors)
    elif field.is_repeated:
        _set_repeated(message, field, value, path, errors)
    elif field.type == _FD.TYPE_MESSAGE:
        target = getattr(message, field.name)
        target.SetInParent()
        _fill(target, value, path, errors)
    else:
        if field.full_name in QUANTITY_FIELDS and value != "":
            converted = _quantity(value, path, errors)
        else:
            converted = _scalar(field, value, path, errors)
        if converted is not _INVALID:
            setattr(message, field.name, converted)


def _set_repeated(
    message: Message,
    field: FieldDescriptor,
    value: Any,
    path: str,
    errors: list[FieldError],
) -> None:
    if not isinstance(value, list | tuple):
        errors.append(FieldError(path, f"expected a list, got {describe(value)}"))
        return
    container = getattr(message, field.name)
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        if item is None:
            continue
        if field.type == _FD.TYPE_MESSAGE:
            _fill(container.add(), item, item_path, errors)
            continue
        converted = _scalar(field, item, item_path, errors)
        if converted is not _INVALID:
            container.append(converted)


def _set_map(
    message: Message,
    field: FieldDescriptor,
    value: Any,
    path: str,
    errors: list[FieldError],
) -> None:
    if not isinstance(value, Mapping):
        errors.append(FieldError(path, f"expected an object, got {describe(value)}"))
        return
    container = getattr(message, field.name)
    key_field = _entry_field(field, "key")
    value_field = _entry_field(field, "value")
    quantities = field.full_name in QUANTITY_MAP_FIELDS
    for raw_key, item in value.items():
        item_path = f"{path}.{raw_key}"
        key = _map_key(key_field, raw_key, item_path, errors)
        if item is None or key is _INVALID:
            continue
        if value_field.type == _FD.TYPE_MESSAGE:
            _fill(container[key], item, item_path, errors)
            continue
        converted = _quantity(item, item_path, errors) if quantities else _scalar(value_field, item, item_path, errors)
        if converted is not _INVALID:
            container[key] = converted


def _map_key(field: FieldDescriptor, key: Any, path: str, errors: list[FieldError]) -> Any:
    # JSON object keys are strings; a map with integer keys reads them as such.
    if field.type != _FD.TYPE_STRING and isinstance(key, str) and _INT_KEY.fullmatch(key):
        key = int(key)
    return _scalar(field, key, path, errors, what="key")


# --------------------------------------------------------------------------
# scalars


def _scalar(
    field: FieldDescriptor,
    value: Any,
    path: str,
    errors: list[FieldError],
    *,
    what: str = "",
) -> Any:
    """`value` converted for a scalar field, or `_INVALID` (error recorded)."""
    kind = field.type
    if kind in _INT_RANGES:
        return _integer(value, _INT_RANGES[kind], path, errors)
    if kind == _FD.TYPE_STRING:
        return _typed(value, str, "a string", path, errors, what)
    if kind == _FD.TYPE_BOOL:
        return _typed(value, bool, "a boolean", path, errors, what)
    if kind in (_FD.TYPE_FLOAT, _FD.TYPE_DOUBLE):
        return _number(value, path, errors)
    if kind == _FD.TYPE_BYTES:
        return _bytes(value, path, errors)
    if kind == _FD.TYPE_ENUM:
        return _enum(field, value, path, errors)
    errors.append(FieldError(path, f"unsupported field type {kind}"))
    return _INVALID


def _typed(
    value: Any,
    kind: type,
    expected: str,
    path: str,
    errors: list[FieldError],
    what: str = "",
) -> Any:
    if isinstance(value, kind):
        return value
    noun = f"{what} " if what else ""
    errors.append(FieldError(path, f"expected {noun}{expected}, got {describe(value)}"))
    return _INVALID


def _integer(
    value: Any,
    bounds: tuple[int, int, str],
    path: str,
    errors: list[FieldError],
) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(FieldError(path, f"expected an integer, got {describe(value)}"))
        return _INVALID
    low, high, width = bounds
    if value < 0 and low == 0:
        errors.append(FieldError(path, f"must not be negative, got {_int_text(value)}"))
        return _INVALID
    if not low <= value <= high:
        errors.append(FieldError(path, f"must fit in {width}, got {_int_text(value)}"))
        return _INVALID
    return value


def _number(value: Any, path: str, errors: list[FieldError]) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors.append(FieldError(path, f"expected a number, got {describe(value)}"))
        return _INVALID
    try:
        return float(value)
    except OverflowError:
        errors.append(FieldError(path, "number out of range"))
        return _INVALID


def _bytes(value: Any, path: str, errors: list[FieldError]) -> Any:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as e:
            # The text itself is not repeated: it may be a secret (use stringData for plain text).
            errors.append(FieldError(path, f"invalid base64 ({len(value)} characters): {e}"))
            return _INVALID
    errors.append(FieldError(path, f"expected base64 text, got {describe(value)}"))
    return _INVALID


def _enum(field: FieldDescriptor, value: Any, path: str, errors: list[FieldError]) -> Any:
    values = field.enum_type.values_by_name if field.enum_type is not None else {}
    if isinstance(value, str) and value in values:
        return values[value].number
    names = ", ".join(values)
    errors.append(FieldError(path, f"expected one of {names}, got {describe(value)}"))
    return _INVALID


def _quantity(value: Any, path: str, errors: list[FieldError]) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        message = f"expected a quantity (a string or a number), got {describe(value)}"
        errors.append(FieldError(path, message))
        return _INVALID
    text = value if isinstance(value, str) else _number_text(value)
    try:
        parse_quantity(text)
    except ValueError as exc:
        errors.append(FieldError(path, str(exc)))
        return _INVALID
    return text


# --------------------------------------------------------------------------
# IntOrString and Timestamp


def _fill_int_or_string(target: IntOrString, value: Any, path: str, errors: list[FieldError]) -> None:
    if isinstance(value, str):
        target.str_val = value
    elif isinstance(value, int) and not isinstance(value, bool):
        if _integer(value, _SIGNED_32, path, errors) is not _INVALID:
            target.int_val = value
    else:
        message = f"expected an integer or a string, got {describe(value)}"
        errors.append(FieldError(path, message))


def _fill_timestamp(target: Timestamp, value: Any, path: str, errors: list[FieldError]) -> None:
    parsed = _timestamp(value)
    if parsed is None:
        message = f"expected an RFC 3339 timestamp such as {_TIMESTAMP_EXAMPLE}, got {describe(value)}"
        errors.append(FieldError(path, message))
        return
    seconds, nanos = parsed
    if not _MIN_SECONDS <= seconds <= _MAX_SECONDS:
        errors.append(FieldError(path, "timestamp out of range (years 1 to 9999)"))
        return
    target.seconds = seconds
    target.nanos = nanos


def _timestamp(value: Any) -> tuple[int, int] | None:
    """(seconds, nanos) since the epoch, or None when `value` is not a timestamp."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        delta = moment - _EPOCH
        return delta.days * 86400 + delta.seconds, delta.microseconds * 1000
    if isinstance(value, str):
        return _parse_rfc3339(value)
    return None


def _parse_rfc3339(text: str) -> tuple[int, int] | None:
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zulu, sign, off_hours, off_minutes = match.groups()[6:]
    try:
        zone = UTC
        if not zulu:
            offset = timedelta(hours=int(off_hours), minutes=int(off_minutes))
            zone = timezone(-offset if sign == "-" else offset)
        moment = datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError:
        return None
    delta = moment - _EPOCH
    nanos = int((fraction or "").ljust(9, "0"))
    return delta.days * 86400 + delta.seconds, nanos


# --------------------------------------------------------------------------
# helpers


def describe(value: Any) -> str:
    """A value as error messages show it: `string "three"`, `integer 7`, `list`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean true" if value else "boolean false"
    if isinstance(value, int):
        return f"integer {_int_text(value)}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:60] + "..."
        return f"string {json.dumps(shown, ensure_ascii=False)}"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, date):
        return f"date {value.isoformat()}"
    return type(value).__name__


def _int_text(value: int) -> str:
    # str() of a huge int is slow and, past 4300 digits, refused by Python.
    return str(value) if value.bit_length() <= 256 else "a very large integer"


def _number_text(value: float) -> str:
    return _int_text(value) if isinstance(value, int) else repr(value)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _is_map(field: FieldDescriptor) -> bool:
    entry = field.message_type
    return entry is not None and bool(entry.GetOptions().map_entry)


def _entry_field(field: FieldDescriptor, name: str) -> FieldDescriptor:
    """The `key` or `value` field of a map field's entry message."""
    entry = field.message_type
    if entry is None:
        raise TypeError(f"{field.full_name} is not a map field")
    return entry.fields_by_name[name]


@cache
def _fields_by_json_name(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    return {field.json_name: field for field in descriptor.fields}


def _unknown_field(key: str, fields: Mapping[str, FieldDescriptor]) -> str:
    hint = _suggest(key, fields)
    suffix = f' (did you mean "{hint}"?)' if hint else ""
    return f"unknown field {json.dumps(key, ensure_ascii=False)}{suffix}"


def _suggest(key: str, fields: Mapping[str, FieldDescriptor]) -> str | None:
    """The json name the user probably meant: by snake_case, case, or spelling."""
    folded = key.replace("_", "").replace("-", "").lower()
    for json_name, field in fields.items():
        if key == field.name or folded == json_name.lower():
            return json_name
    return close_name(key, fields)


_WORD: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+")


def close_name(typed: str, names: Iterable[str]) -> str | None:
    """The name `typed` is a misspelling of, or None: a hint only where the meaning is the same.

    A few letters off (at most a quarter of the name, and two), and, word by
    camelCase word, each changed word a typo of the other (`replica` of
    `replicas`), never another word (`pod` for `node`, `fsGroup` for
    `runAsGroup`, `ServiceAccount` for `Service`): those name other features.
    """
    best: tuple[int, str] | None = None
    for name in names:
        distance = _edit_distance(typed.lower(), name.lower())
        if distance > min(2, max(1, len(typed) // 4)) or not _same_words(typed, name):
            continue
        if best is None or distance < best[0]:
            best = (distance, name)
    return best[1] if best else None


def _same_words(typed: str, name: str) -> bool:
    ours, theirs = _WORD.findall(typed), _WORD.findall(name)
    if len(ours) != len(theirs):
        return len(ours) <= 1 or len(theirs) <= 1
    for a, b in zip(ours, theirs, strict=True):
        if _edit_distance(a.lower(), b.lower()) > max(1, max(len(a), len(b)) // 4):
            return False
    return True


def _edit_distance(a: str, b: str) -> int:
    """Levenshtein distance with adjacent transpositions (optimal string alignment)."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]
