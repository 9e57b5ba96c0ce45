"""Secret values for the pods sent to a node. Pure code: no I/O.

Stored pods keep `env[].valueFrom.secretKeyRef`; only the copy of a pod in its
own node's assignment set gets the value, so a node learns exactly the secret
values its pods reference (node restriction). A resolved variable keeps its
valueFrom next to the value (the agent leaves such values out of the
container's spec hash: a changed Secret does not restart a running container,
its next start gets the new value, as in Kubernetes).

A reference that cannot be resolved leaves the variable without a value and
the container's problem in the pod annotation `corral.io/container-config-errors`
(`wellknown.CONFIG_ERRORS`; JSON: container name → message); the agent does not start that container and
shows it waiting with reason CreateContainerConfigError. An `optional`
reference that cannot be resolved leaves the variable unset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from protos.corral.v1 import pod_pb2, secret_pb2
from protos.wellknown import CONFIG_ERRORS

# Also in agent/pods/lifecycle.py (the planes do not import each other).

SecretLookup = Callable[[str, str], secret_pb2.Secret | None]


def secret_refs(pod: pod_pb2.Pod) -> set[str]:
    """The names of the Secrets the pod's env references."""
    return {
        env.value_from.secret_key_ref.name
        for c in pod.spec.containers
        for env in c.env
        if env.HasField("value_from") and env.value_from.secret_key_ref.name
    }


def _value(namespace: str, ref: pod_pb2.SecretKeySelector, lookup: SecretLookup) -> tuple[str | None, str]:
    """The referenced value, or None and why not."""
    secret = lookup(namespace, ref.name)
    if secret is None:
        return None, f'secret "{ref.name}" not found'
    if ref.key not in secret.data:
        return None, f"couldn't find key {ref.key} in Secret {namespace}/{ref.name}"
    try:
        return secret.data[ref.key].decode("utf-8"), ""
    except UnicodeDecodeError:
        return None, f"key {ref.key} in Secret {namespace}/{ref.name} is not valid UTF-8 text"


def resolve(pod: pod_pb2.Pod, lookup: SecretLookup) -> tuple[pod_pb2.Pod, str]:
    """The pod as its node gets it, and a digest of what was resolved ("" when nothing)."""
    if not secret_refs(pod):
        return pod, ""
    out = pod_pb2.Pod()
    out.CopyFrom(pod)
    out.metadata.annotations.pop(CONFIG_ERRORS, None)
    namespace = pod.metadata.namespace
    errors: dict[str, str] = {}
    digest = hashlib.sha256()
    for container in out.spec.containers:
        kept: list[pod_pb2.EnvVar] = []
        for env in container.env:
            ref = env.value_from.secret_key_ref
            if not env.HasField("value_from") or not ref.name:
                kept.append(env)
                continue
            value, problem = _value(namespace, ref, lookup)
            digest.update(json.dumps([container.name, env.name, value, problem]).encode())
            if value is not None:
                env.value = value
            elif ref.optional:
                continue
            else:
                errors.setdefault(container.name, problem)
            kept.append(env)
        del container.env[:]
        container.env.extend(kept)
    if errors:
        out.metadata.annotations[CONFIG_ERRORS] = json.dumps(errors, sort_keys=True)
    return out, digest.hexdigest()
