"""What each kind of identity may call (pure: method name and role in, verdict out).

- nodes: the NodeService (further restricted to their own node name by the
  service itself) and renewing their own certificate;
- admins: everything on the API port but the NodeService, which speaks for
  one node and is the agents' alone;
- control-plane replicas (a certificate each replica issues itself from the
  cluster CA): the MetricsRelay alone, which only they may call.
"""

from __future__ import annotations

from corral.common.pki.certs import Role

NODE_SERVICE = "/corral.v1.NodeService/"
RENEW = "/corral.v1.SecurityService/RenewCertificate"
METRICS_RELAY = "/corral.v1.MetricsRelay/"


def allowed(method: str, role: Role) -> bool:
    if method.startswith(METRICS_RELAY) or role is Role.CONTROLPLANE:
        return method.startswith(METRICS_RELAY) and role is Role.CONTROLPLANE
    if method == RENEW:
        return True
    if method.startswith(NODE_SERVICE):
        return role is Role.NODE
    return role is Role.ADMIN
