"""The files of a pod's configMap, secret and projected volumes, as its node gets them. Pure code.

Only the copy of a pod in its own node's assignment set carries them, beside
the pods (`AssignmentSet.volumes`, one `VolumePayload` per volume), so a node
learns only the ConfigMaps and Secrets of its own pods, and of those only the
keys a volume uses (its `items`, or every key when it names none). The files
are projected as the kubelet projects them:

- every key of `data` and `binaryData` (or the `items`) at its path, with the
  item's `mode`, else the volume's `defaultMode` (defaulted to 0644 at the API);
- projected volumes: each source in order; a downwardAPI file holds the pod's
  name, namespace, uid, or its labels or annotations as sorted `key="value"` lines;
- a missing object (or a key named in `items`) that is `optional` leaves the
  files out; one that is not makes the volume's problem, which `with_errors`
  puts in the pod's `corral.io/container-config-errors` annotation beside the
  env's (`configenv`): the agent keeps every container of the pod waiting with
  CreateContainerConfigError until the object exists, as it does for env.

The payloads are not part of the pod spec, so a changed object rewrites the
files on the node (atomically) without restarting anything.
"""

from __future__ import annotations

import hashlib
import json
import re

from controlplane.nodeapi.configenv import ConfigMapLookup, SecretLookup
from protos.corral.v1 import node_service_pb2, pod_pb2
from protos.wellknown import CONFIG_ERRORS, ENV_FROM

_KEYED = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


def refs(pod: pod_pb2.Pod) -> set[tuple[str, str]]:
    """(kind, name) of every ConfigMap and Secret the pod's volumes project."""
    found: set[tuple[str, str]] = set()
    for volume in pod.spec.volumes:
        if volume.HasField("config_map"):
            found.add(("ConfigMap", volume.config_map.name))
        elif volume.HasField("secret"):
            found.add(("Secret", volume.secret.secret_name))
        for source in volume.projected.sources:
            if source.HasField("config_map"):
                found.add(("ConfigMap", source.config_map.name))
            elif source.HasField("secret"):
                found.add(("Secret", source.secret.name))
    return found


def projects_metadata(pod: pod_pb2.Pod) -> bool:
    """Whether a projected volume of the pod holds its labels or annotations (downwardAPI):
    a change to them must reach the node."""
    return any(
        "labels" in item.field_ref.field_path or "annotations" in item.field_ref.field_path
        for volume in pod.spec.volumes
        for source in volume.projected.sources
        for item in source.downward_api.items
    )


def holds_secret(volume: pod_pb2.Volume) -> bool:
    """Whether the volume's files come (partly) from a Secret: the agent keeps them on tmpfs."""
    return volume.HasField("secret") or any(s.HasField("secret") for s in volume.projected.sources)


def _keys(
    kind: str,
    namespace: str,
    name: str,
    values: dict[str, bytes] | None,
    items: list[pod_pb2.KeyToPath],
    optional: bool,
    mode: int,
) -> tuple[list[node_service_pb2.VolumeFile], str]:
    """One ConfigMap's or Secret's files, and why they cannot be made ("" when they can)."""
    if values is None:
        return [], "" if optional else f'{kind.lower()} "{name}" not found'
    if not items:
        return [node_service_pb2.VolumeFile(path=k, data=v, mode=mode) for k, v in sorted(values.items())], ""
    files = []
    for item in items:
        if item.key not in values:
            if optional:
                continue
            return [], f"couldn't find key {item.key} in {kind} {namespace}/{name}"
        file_mode = item.mode if item.HasField("mode") else mode
        files.append(node_service_pb2.VolumeFile(path=item.path, data=values[item.key], mode=file_mode))
    return files, ""


def _config_map_values(config_maps: ConfigMapLookup, namespace: str, name: str) -> dict[str, bytes] | None:
    cm = config_maps(namespace, name)
    if cm is None:
        return None
    return {**{k: v.encode() for k, v in cm.data.items()}, **dict(cm.binary_data)}


def _secret_values(secrets: SecretLookup, namespace: str, name: str) -> dict[str, bytes] | None:
    secret = secrets(namespace, name)
    return None if secret is None else dict(secret.data)


def _sorted_lines(values: dict[str, str]) -> bytes:
    """Labels or annotations as the kubelet writes them: `key="value"` lines, sorted."""
    return "\n".join(f"{k}={json.dumps(v)}" for k, v in sorted(values.items())).encode()


def downward_value(pod: pod_pb2.Pod, field_path: str) -> bytes:
    meta = pod.metadata
    keyed = _KEYED.match(field_path)
    if keyed:
        values = meta.labels if keyed[1] == "labels" else meta.annotations
        return values.get(keyed[2], "").encode()
    simple = {
        "metadata.name": meta.name,
        "metadata.namespace": meta.namespace,
        "metadata.uid": meta.uid,
    }
    if field_path in simple:
        return simple[field_path].encode()
    if field_path == "metadata.labels":
        return _sorted_lines(dict(meta.labels))
    # metadata.annotations (the API admits no other path); the control plane's own are not the user's.
    return _sorted_lines({k: v for k, v in meta.annotations.items() if k not in (CONFIG_ERRORS, ENV_FROM)})


def project_volume(
    pod: pod_pb2.Pod, volume: pod_pb2.Volume, secrets: SecretLookup, config_maps: ConfigMapLookup
) -> tuple[list[node_service_pb2.VolumeFile], str]:
    """The files of one configMap, secret or projected volume, and why it cannot be made."""
    ns = pod.metadata.namespace
    if volume.HasField("config_map"):
        cm = volume.config_map
        values = _config_map_values(config_maps, ns, cm.name)
        return _keys("ConfigMap", ns, cm.name, values, list(cm.items), cm.optional, cm.default_mode)
    if volume.HasField("secret"):
        s = volume.secret
        values = _secret_values(secrets, ns, s.secret_name)
        return _keys("Secret", ns, s.secret_name, values, list(s.items), s.optional, s.default_mode)
    files: list[node_service_pb2.VolumeFile] = []
    mode = volume.projected.default_mode
    for source in volume.projected.sources:
        if source.HasField("config_map"):
            c = source.config_map
            found, problem = _keys(
                "ConfigMap", ns, c.name, _config_map_values(config_maps, ns, c.name), list(c.items), c.optional, mode
            )
        elif source.HasField("secret"):
            s2 = source.secret
            found, problem = _keys(
                "Secret", ns, s2.name, _secret_values(secrets, ns, s2.name), list(s2.items), s2.optional, mode
            )
        else:
            found, problem = [], ""
            for item in source.downward_api.items:
                file_mode = item.mode if item.HasField("mode") else mode
                value = downward_value(pod, item.field_ref.field_path)
                found.append(node_service_pb2.VolumeFile(path=item.path, data=value, mode=file_mode))
        if problem:
            return [], problem
        files += found
    return files, ""


def project(
    pod: pod_pb2.Pod, secrets: SecretLookup, config_maps: ConfigMapLookup
) -> tuple[list[node_service_pb2.VolumePayload], str]:
    """The payloads of the pod's configMap, secret and projected volumes, and the first
    volume's problem ("" when every volume can be made)."""
    payloads = []
    error = ""
    for volume in pod.spec.volumes:
        if not (volume.HasField("config_map") or volume.HasField("secret") or volume.HasField("projected")):
            continue
        files, problem = project_volume(pod, volume, secrets, config_maps)
        if problem:
            error = error or f'volume "{volume.name}": {problem}'
            continue
        payloads.append(
            node_service_pb2.VolumePayload(
                pod_uid=pod.metadata.uid, volume=volume.name, files=files, secret=holds_secret(volume)
            )
        )
    return payloads, error


def with_error(pod: pod_pb2.Pod, error: str) -> pod_pb2.Pod:
    """The pod with a volume's problem as the config error of each container (init
    containers too) that has none from its env (volumes are made before any container
    of the pod starts)."""
    out = pod_pb2.Pod()
    out.CopyFrom(pod)
    raw = out.metadata.annotations.get(CONFIG_ERRORS)
    errors: dict[str, str] = json.loads(raw) if raw else {}
    for container in [*out.spec.init_containers, *out.spec.containers]:
        errors.setdefault(container.name, error)
    out.metadata.annotations[CONFIG_ERRORS] = json.dumps(errors, sort_keys=True)
    return out


def digest(payloads: list[node_service_pb2.VolumePayload], error: str) -> str:
    """A digest of what the node gets for the pod's volumes ("" when nothing)."""
    if not payloads and not error:
        return ""
    h = hashlib.sha256(error.encode())
    for payload in payloads:
        h.update(payload.SerializeToString(deterministic=True))
    return h.hexdigest()
