"""Validation of a pod's volume sources and subPaths, as Kubernetes validates them. Pure code.

- A volume sets at most one source (none: an emptyDir, as the API defaults it).
- configMap, secret and projected: a name, items with a key and a path, modes
  within 0-0777; in a projected volume, no two files at the same path.
- A file's path (items[].path, downwardAPI items[].path) and a volumeMount's
  subPath are relative, with no ".." element (a path also may not start with "..").
- projected sources: configMap, secret, downwardAPI (fieldRef to the pod's
  metadata.name, namespace, uid, labels, annotations); serviceAccountToken and
  resourceFieldRef are refused by name (corral issues no tokens, projects no resources).
- subPathExpr is refused: corral does not expand variables in it (use subPath).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

from protos import quantity
from protos.corral.v1 import pod_pb2

# Each source a Volume may set: (proto field, JSON name).
VOLUME_SOURCES = (
    ("host_path", "hostPath"),
    ("empty_dir", "emptyDir"),
    ("config_map", "configMap"),
    ("secret", "secret"),
    ("projected", "projected"),
    ("persistent_volume_claim", "persistentVolumeClaim"),
)
# The downward API fields a projected volume's file may hold.
DOWNWARD_FIELDS = ("metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels", "metadata.annotations")
_DOWNWARD_KEYED = re.compile(r"^metadata\.(labels|annotations)\['[^']+'\]$")
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_MODE = 0o777
FS_GROUP_CHANGE_POLICIES = ("", "OnRootMismatch", "Always")


class _Problems(Protocol):
    def add(self, path: str, message: str) -> None: ...


def local_path_problem(path: str) -> str | None:
    """Why ``path`` is not a relative path that stays below its root (Kubernetes'
    validateLocalDescendingPath); None when it is fine."""
    if path.startswith("/"):
        return f'must be a relative path, got "{path[:120]}"'
    if ".." in path.split("/"):
        return f"must not contain '..', got \"{path[:120]}\""
    return None


def validate_volume_source(p: _Problems, at: str, volume: pod_pb2.Volume) -> None:
    """The one source a volume sets, and its fields."""
    present = [json_name for field, json_name in VOLUME_SOURCES if volume.HasField(field)]  # type: ignore[arg-type]
    if len(present) > 1:
        p.add(at, f"may not specify more than 1 volume type, got {', '.join(present)}")
        return
    if volume.HasField("config_map"):
        source = volume.config_map
        _object_name(p, f"{at}.configMap.name", source.name)
        _items(p, f"{at}.configMap.items", source.items)
        _mode(p, f"{at}.configMap.defaultMode", source.default_mode, source.HasField("default_mode"))
    elif volume.HasField("secret"):
        secret = volume.secret
        _object_name(p, f"{at}.secret.secretName", secret.secret_name)
        _items(p, f"{at}.secret.items", secret.items)
        _mode(p, f"{at}.secret.defaultMode", secret.default_mode, secret.HasField("default_mode"))
    elif volume.HasField("projected"):
        _projected(p, f"{at}.projected", volume.projected)
    elif volume.empty_dir.size_limit and quantity.parse_quantity(volume.empty_dir.size_limit) < 0:
        p.add(f"{at}.emptyDir.sizeLimit", f'must be >= 0, got "{volume.empty_dir.size_limit}"')


def _object_name(p: _Problems, at: str, name: str) -> None:
    if not name:
        p.add(at, "required")
    elif len(name) > 253 or not _NAME.match(name):
        p.add(at, f'must be a DNS-1123 subdomain (lower case letters, digits, "-" and "."), got "{name[:120]}"')


def _mode(p: _Problems, at: str, mode: int, present: bool) -> None:
    if present and not 0 <= mode <= MAX_MODE:
        p.add(at, f"must be a number between 0 and 0777 (octal), both inclusive, got {mode}")


def _file_path(p: _Problems, at: str, path: str) -> None:
    if not path:
        p.add(at, "required")
        return
    problem = local_path_problem(path)
    if problem is None and path.startswith(".."):
        problem = f"must not start with '..', got \"{path[:120]}\""
    if problem is not None:
        p.add(at, problem)


def _items(p: _Problems, at: str, items: Iterable[pod_pb2.KeyToPath]) -> list[tuple[str, str]]:
    """The items' (field path, file path)."""
    paths = []
    for i, item in enumerate(items):
        where = f"{at}[{i}]"
        if not item.key:
            p.add(f"{where}.key", "required")
        elif len(item.key) > 253 or not _KEY.match(item.key):
            p.add(f"{where}.key", f'must consist of alphanumerics, "-", "_" or ".", got "{item.key[:120]}"')
        _file_path(p, f"{where}.path", item.path)
        _mode(p, f"{where}.mode", item.mode, item.HasField("mode"))
        paths.append((f"{where}.path", item.path))
    return paths


def _projected(p: _Problems, at: str, source: pod_pb2.ProjectedVolumeSource) -> None:
    _mode(p, f"{at}.defaultMode", source.default_mode, source.HasField("default_mode"))
    seen: set[str] = set()
    for i, projection in enumerate(source.sources):
        where = f"{at}.sources[{i}]"
        kinds = [
            json_name
            for field, json_name in (
                ("config_map", "configMap"),
                ("secret", "secret"),
                ("downward_api", "downwardAPI"),
                ("service_account_token", "serviceAccountToken"),
            )
            if projection.HasField(field)  # type: ignore[arg-type]
        ]
        if len(kinds) != 1:
            shown = ", ".join(kinds) if kinds else "none"
            p.add(where, f"must set exactly one of configMap, secret, downwardAPI, got {shown}")
            continue
        paths: list[tuple[str, str]] = []
        if projection.HasField("config_map"):
            _object_name(p, f"{where}.configMap.name", projection.config_map.name)
            paths = _items(p, f"{where}.configMap.items", projection.config_map.items)
        elif projection.HasField("secret"):
            _object_name(p, f"{where}.secret.name", projection.secret.name)
            paths = _items(p, f"{where}.secret.items", projection.secret.items)
        elif projection.HasField("downward_api"):
            paths = _downward(p, f"{where}.downwardAPI.items", projection.downward_api.items)
        else:
            p.add(
                f"{where}.serviceAccountToken",
                "not supported: corral issues no service account tokens (remove the source)",
            )
        for field_path, path in paths:
            if path and path in seen:
                p.add(field_path, f'conflicting duplicate path "{path[:120]}"')
            seen.add(path)


def _downward(p: _Problems, at: str, items: Iterable[pod_pb2.DownwardAPIVolumeFile]) -> list[tuple[str, str]]:
    paths = []
    for i, item in enumerate(items):
        where = f"{at}[{i}]"
        _file_path(p, f"{where}.path", item.path)
        _mode(p, f"{where}.mode", item.mode, item.HasField("mode"))
        paths.append((f"{where}.path", item.path))
        if item.HasField("resource_field_ref"):
            p.add(f"{where}.resourceFieldRef", "not supported: corral projects only fieldRef (the pod's metadata)")
            continue
        if not item.HasField("field_ref"):
            p.add(f"{where}.fieldRef", "required")
            continue
        ref = item.field_ref
        if ref.api_version not in ("", "v1"):
            p.add(f"{where}.fieldRef.apiVersion", f'must be "v1", got "{ref.api_version[:60]}"')
        if ref.field_path not in DOWNWARD_FIELDS and not _DOWNWARD_KEYED.match(ref.field_path):
            shown = ", ".join(f'"{f}"' for f in DOWNWARD_FIELDS)
            p.add(f"{where}.fieldRef.fieldPath", f'must be one of {shown}, got "{ref.field_path[:120]}"')
    return paths


def validate_mount_paths(p: _Problems, at: str, mount: pod_pb2.VolumeMount) -> None:
    """subPath relative and below the volume; subPathExpr refused."""
    if mount.sub_path_expr:
        p.add(f"{at}.subPathExpr", "not supported: corral does not expand variables in subPathExpr (use subPath)")
    if mount.sub_path:
        problem = local_path_problem(mount.sub_path)
        if problem is not None:
            p.add(f"{at}.subPath", problem)


def validate_fs_group(p: _Problems, at: str, sc: pod_pb2.PodSecurityContext) -> None:
    if sc.HasField("fs_group") and sc.fs_group < 0:
        p.add(f"{at}.fsGroup", f"must be >= 0, got {sc.fs_group}")
    for i, gid in enumerate(sc.supplemental_groups):
        if gid < 0:
            p.add(f"{at}.supplementalGroups[{i}]", f"must be >= 0, got {gid}")
    if sc.fs_group_change_policy not in FS_GROUP_CHANGE_POLICIES:
        p.add(
            f"{at}.fsGroupChangePolicy",
            f'must be "OnRootMismatch" or "Always", got "{sc.fs_group_change_policy[:60]}"',
        )
