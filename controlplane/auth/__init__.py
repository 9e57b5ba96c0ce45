"""Who may call the control plane, and the credentials that say so.

- `ca`: the cluster CA under ``<data dir>/pki`` (created on first start),
  serving certificates, and client certificates for nodes and admins;
- `tokens`: join tokens in etcd (only the secret's hash is stored);
- `revocations`: "certificates of node X issued before T are refused", in etcd,
  watched by every replica, which closes the node's open streams;
- `peer` and `policy`: the verified identity of a call and what it may call;
- `interceptor`: refuses every API call without a valid, unrevoked
  certificate allowed to make it;
- `service`: JoinService (token → certificate, on the join port) and
  SecurityService (tokens, revocation, renewal, on the API port).

Errors:

    AuthError
    ├── PkiError        the CA files cannot be created or read
    ├── JoinRefused     a join token is unknown, wrong, expired, revoked or of the wrong role
    └── TokenNotFound   no token with that id
"""


class AuthError(Exception):
    pass


class PkiError(AuthError):
    pass


class JoinRefused(AuthError):
    pass


class TokenNotFound(AuthError):
    pass
