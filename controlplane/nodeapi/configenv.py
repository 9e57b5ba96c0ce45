"""The environment of the pods sent to a node, from Secrets and ConfigMaps. Pure code: no I/O.

Stored pods keep `env[].valueFrom` (`secretKeyRef`, `configMapKeyRef`) and
`envFrom` (`secretRef`, `configMapRef`); only the copy of a pod in its own
node's assignment set gets the values, so a node learns exactly the values its
pods reference (node restriction: never a whole Secret or ConfigMap of a pod
bound elsewhere).

- An `env` entry from a reference keeps its valueFrom next to the value (the
  agent leaves such values out of the container's spec hash: a changed object
  does not restart a running container, its next start gets the new value, as
  in Kubernetes).
- The variables of `envFrom`, in source order (a later source wins over an
  earlier one) and minus the names an `env` entry sets (env wins), go in the
  pod annotation `corral.io/env-from` (`wellknown.ENV_FROM`; JSON: container
  name → {name: value}), which is not part of the spec hash either. A key that
  is not a valid variable name (after the prefix) is skipped, as the kubelet
  does, and the pod gets the kubelet's Warning event InvalidEnvironmentVariableNames
  (once per pod and message: `AssignmentIndex.record_warnings`).

A reference that cannot be resolved leaves the variable without a value and
the container's problem in the pod annotation `corral.io/container-config-errors`
(`wellknown.CONFIG_ERRORS`; JSON: container name → message); the agent does not
start that container and shows it waiting with reason CreateContainerConfigError.
An `optional` reference that cannot be resolved is skipped.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from protos.corral.v1 import configmap_pb2, pod_pb2, secret_pb2
from protos.pods import every_container
from protos.wellknown import CONFIG_ERRORS, ENV_FROM

SecretLookup = Callable[[str, str], secret_pb2.Secret | None]
ConfigMapLookup = Callable[[str, str], configmap_pb2.ConfigMap | None]

# Kubernetes' IsEnvVarName: what an envFrom key (with its prefix) must be to become a variable.
_ENV_VAR_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def _no_config_maps(namespace: str, name: str) -> configmap_pb2.ConfigMap | None:
    return None


def secret_refs(pod: pod_pb2.Pod) -> set[str]:
    """The names of the Secrets the pod's env and envFrom reference."""
    return {name for kind, name in refs(pod) if kind == "Secret"}


def config_map_refs(pod: pod_pb2.Pod) -> set[str]:
    """The names of the ConfigMaps the pod's env and envFrom reference."""
    return {name for kind, name in refs(pod) if kind == "ConfigMap"}


def refs(pod: pod_pb2.Pod) -> set[tuple[str, str]]:
    """(kind, name) of every Secret and ConfigMap the pod's containers (init containers too) take variables from."""
    found: set[tuple[str, str]] = set()
    for _, c in every_container(pod.spec):
        for env in c.env:
            if env.value_from.secret_key_ref.name:
                found.add(("Secret", env.value_from.secret_key_ref.name))
            if env.value_from.config_map_key_ref.name:
                found.add(("ConfigMap", env.value_from.config_map_key_ref.name))
        for source in c.env_from:
            if source.secret_ref.name:
                found.add(("Secret", source.secret_ref.name))
            if source.config_map_ref.name:
                found.add(("ConfigMap", source.config_map_ref.name))
    return found


@dataclass
class Resolved:
    """One container's environment as its node gets it."""

    # The env entries, referenced values filled in (unresolvable optional ones left out).
    env: list[pod_pb2.EnvVar] = field(default_factory=list)
    # envFrom's variables that no env entry overrides.
    env_from: dict[str, str] = field(default_factory=dict)
    # The first reason the container cannot start ("" when it can).
    error: str = ""
    # Per envFrom source that had them: "Keys [...] from the EnvFrom ... were skipped ...".
    skipped: list[str] = field(default_factory=list)


def _text(value: bytes, where: str) -> tuple[str | None, str]:
    try:
        return value.decode("utf-8"), ""
    except UnicodeDecodeError:
        return None, f"{where} is not valid UTF-8 text"


def _secret_value(namespace: str, ref: pod_pb2.SecretKeySelector, secrets: SecretLookup) -> tuple[str | None, str]:
    """The referenced value, or None and why not."""
    secret = secrets(namespace, ref.name)
    if secret is None:
        return None, f'secret "{ref.name}" not found'
    if ref.key not in secret.data:
        return None, f"couldn't find key {ref.key} in Secret {namespace}/{ref.name}"
    return _text(secret.data[ref.key], f"key {ref.key} in Secret {namespace}/{ref.name}")


def _config_map_value(
    namespace: str, ref: pod_pb2.ConfigMapKeySelector, config_maps: ConfigMapLookup
) -> tuple[str | None, str]:
    """The referenced value (from data, as the kubelet reads it), or None and why not."""
    cm = config_maps(namespace, ref.name)
    if cm is None:
        return None, f'configmap "{ref.name}" not found'
    if ref.key not in cm.data:
        return None, f"couldn't find key {ref.key} in ConfigMap {namespace}/{ref.name}"
    return cm.data[ref.key], ""


def _source_values(
    namespace: str, source: pod_pb2.EnvFromSource, secrets: SecretLookup, config_maps: ConfigMapLookup
) -> tuple[dict[str, str] | None, bool, str, str]:
    """One envFrom source: (its keys and values or None, optional, what it is, why it is missing)."""
    if source.HasField("secret_ref"):
        name = source.secret_ref.name
        secret = secrets(namespace, name)
        if secret is None:
            return None, source.secret_ref.optional, f"secret {namespace}/{name}", f'secret "{name}" not found'
        values: dict[str, str] = {}
        for key, raw in secret.data.items():
            text, problem = _text(raw, f"key {key} in Secret {namespace}/{name}")
            if text is None:
                return None, False, f"secret {namespace}/{name}", problem
            values[key] = text
        return values, False, f"secret {namespace}/{name}", ""
    name = source.config_map_ref.name
    cm = config_maps(namespace, name)
    if cm is None:
        return None, source.config_map_ref.optional, f"configMap {namespace}/{name}", f'configmap "{name}" not found'
    return dict(cm.data), False, f"configMap {namespace}/{name}", ""


def resolve_container(
    namespace: str, container: pod_pb2.Container, secrets: SecretLookup, config_maps: ConfigMapLookup
) -> Resolved:
    """The container's variables: envFrom in order (later wins), then env over them."""
    out = Resolved()
    from_sources: dict[str, str] = {}
    for source in container.env_from:
        values, optional, what, problem = _source_values(namespace, source, secrets, config_maps)
        if values is None:
            if not optional:
                out.error = out.error or problem
            continue
        invalid = sorted(k for k in values if not _ENV_VAR_NAME.match(source.prefix + k))
        if invalid:
            out.skipped.append(
                f"Keys [{', '.join(invalid)}] from the EnvFrom {what} were skipped since they are "
                "considered invalid environment variable names."
            )
        from_sources.update((source.prefix + k, v) for k, v in sorted(values.items()) if k not in invalid)
    for env in container.env:
        downward = env.value_from.HasField("field_ref") or env.value_from.HasField("resource_field_ref")
        if not env.HasField("value_from") or downward:
            out.env.append(env)  # the agent reads the pod's fields and resources when the container starts
            continue
        source_ref = env.value_from
        if source_ref.HasField("config_map_key_ref"):
            value, problem = _config_map_value(namespace, source_ref.config_map_key_ref, config_maps)
            optional = source_ref.config_map_key_ref.optional
        else:
            value, problem = _secret_value(namespace, source_ref.secret_key_ref, secrets)
            optional = source_ref.secret_key_ref.optional
        resolved = pod_pb2.EnvVar()
        resolved.CopyFrom(env)
        if value is not None:
            resolved.value = value
        elif optional:
            continue
        else:
            out.error = out.error or problem
        out.env.append(resolved)
    explicit = {env.name for env in container.env}
    out.env_from = {k: v for k, v in from_sources.items() if k not in explicit}
    return out


def resolve(
    pod: pod_pb2.Pod, secrets: SecretLookup, config_maps: ConfigMapLookup = _no_config_maps
) -> tuple[pod_pb2.Pod, str]:
    """The pod as its node gets it, and a digest of what was resolved ("" when nothing)."""
    out, digest, _ = resolve_pod(pod, secrets, config_maps)
    return out, digest


def resolve_pod(
    pod: pod_pb2.Pod, secrets: SecretLookup, config_maps: ConfigMapLookup = _no_config_maps
) -> tuple[pod_pb2.Pod, str, list[str]]:
    """`resolve`, and the skipped envFrom keys of every container (the kubelet's event
    InvalidEnvironmentVariableNames). The annotations are the control plane's to set:
    a stored pod's own are dropped."""
    annotations = pod.metadata.annotations
    if not refs(pod) and CONFIG_ERRORS not in annotations and ENV_FROM not in annotations:
        return pod, "", []
    skipped: list[str] = []
    out = pod_pb2.Pod()
    out.CopyFrom(pod)
    out.metadata.annotations.pop(CONFIG_ERRORS, None)
    out.metadata.annotations.pop(ENV_FROM, None)
    errors: dict[str, str] = {}
    env_from: dict[str, dict[str, str]] = {}
    for _, container in every_container(out.spec):
        r = resolve_container(pod.metadata.namespace, container, secrets, config_maps)
        del container.env[:]
        container.env.extend(r.env)
        if r.env_from:
            env_from[container.name] = r.env_from
        if r.error:
            errors[container.name] = r.error
        skipped += r.skipped
    if errors:
        out.metadata.annotations[CONFIG_ERRORS] = json.dumps(errors, sort_keys=True)
    if env_from:
        out.metadata.annotations[ENV_FROM] = json.dumps(env_from, sort_keys=True)
    digest = hashlib.sha256(
        json.dumps(
            [out.metadata.annotations.get(CONFIG_ERRORS), out.metadata.annotations.get(ENV_FROM)]
            + [[c.name, [(e.name, e.value) for e in c.env]] for _, c in every_container(out.spec)]
        ).encode()
    )
    return out, digest.hexdigest(), skipped
