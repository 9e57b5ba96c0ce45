"""Ingress facts every room shares: corral's controller name, the default class,
the annotations corral reads, and which Ingresses corral serves. Pure.

An Ingress is corral's when its class is one whose `spec.controller` is
`corral.io/ingress`: named by `spec.ingressClassName` or (deprecated) by the
`kubernetes.io/ingress.class` annotation; with neither, when the cluster's
default IngressClass (annotated `ingressclass.kubernetes.io/is-default-class:
"true"`; the newest if several, as Kubernetes' admission picks) is corral's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from protos.corral.v1 import ingress_pb2

CONTROLLER: Final = "corral.io/ingress"
DEFAULT_CLASS: Final = "corral"
IS_DEFAULT_CLASS: Final = "ingressclass.kubernetes.io/is-default-class"
CLASS_ANNOTATION: Final = "kubernetes.io/ingress.class"
# HTTP → HTTPS redirect, asked for with "true" in any of these.
SSL_REDIRECT_ANNOTATIONS: Final = (
    "corral.io/ssl-redirect",
    "nginx.ingress.kubernetes.io/ssl-redirect",
    "nginx.ingress.kubernetes.io/force-ssl-redirect",
)
# The prefixes of other controllers' annotations, which corral does not act on.
FOREIGN_ANNOTATION_PREFIXES: Final = (
    "nginx.ingress.kubernetes.io/",
    "traefik.ingress.kubernetes.io/",
    "haproxy.org/",
)
TLS_SECRET_TYPE: Final = "kubernetes.io/tls"
TLS_CERT_KEY: Final = "tls.crt"
TLS_PRIVATE_KEY: Final = "tls.key"
EXACT: Final = "Exact"
PREFIX: Final = "Prefix"
IMPLEMENTATION_SPECIFIC: Final = "ImplementationSpecific"
PATH_TYPES: Final = (EXACT, PREFIX, IMPLEMENTATION_SPECIFIC)


def is_default(ingress_class: ingress_pb2.IngressClass) -> bool:
    return ingress_class.metadata.annotations.get(IS_DEFAULT_CLASS, "").lower() == "true"


def wants_ssl_redirect(ingress: ingress_pb2.Ingress) -> bool:
    annotations = ingress.metadata.annotations
    return any(annotations.get(name, "").lower() == "true" for name in SSL_REDIRECT_ANNOTATIONS)


def class_name(ingress: ingress_pb2.Ingress) -> str | None:
    """The class an Ingress names (the field, else the deprecated annotation), or None."""
    if ingress.spec.HasField("ingress_class_name"):
        return ingress.spec.ingress_class_name
    return ingress.metadata.annotations.get(CLASS_ANNOTATION)


def default_class(classes: Iterable[ingress_pb2.IngressClass]) -> ingress_pb2.IngressClass | None:
    """The default IngressClass: of several, the newest (Kubernetes' admission's choice)."""
    defaults = [c for c in classes if is_default(c)]
    if not defaults:
        return None
    return max(defaults, key=lambda c: (c.metadata.creation_timestamp.ToNanoseconds(), c.metadata.name))


def is_served(ingress: ingress_pb2.Ingress, classes: Iterable[ingress_pb2.IngressClass]) -> bool:
    """Whether corral's ingress controller serves this Ingress."""
    classes = list(classes)
    name = class_name(ingress)
    if name is None:
        chosen = default_class(classes)
        return chosen is not None and chosen.spec.controller == CONTROLLER
    return any(c.metadata.name == name and c.spec.controller == CONTROLLER for c in classes)
