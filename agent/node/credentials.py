"""The node's credentials: a client certificate for its node name, signed by
the cluster CA, kept in ``<data dir>/pki`` (key 0600).

On start the agent uses the saved certificate when it is for this node and not
expired; otherwise it joins with the token (`corral token create` on the
server): it checks the server's CA against the token's pin, then trades the
token and a CSR for a certificate. A server that is not up yet is waited for;
a refusal (wrong, expired or revoked token, another CA) stops the agent with
the server's reason. While running, the certificate is renewed at two thirds
of its lifetime over the mutual-TLS session; a node that was off past expiry
joins again with its token.

The running agent reads its certificate's name and validity with the standard
library (`CertificateFacts`); the `cryptography` package (keys, CSRs, about
8 MB) is loaded only to join or renew.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import random
import ssl
from collections.abc import Callable
from pathlib import Path

import grpc
import structlog

from corral.common.backoff import ExponentialBackoff
from corral.common.pki.credentials import CERT_FILE, Credentials
from corral.common.pki.identity import CertificateError, CertificateFacts, Identity, Role
from corral.common.pki.tokens import JoinToken, TokenFormatError, parse_token

log = structlog.get_logger(__name__)

PKI_DIR = "pki"
RENEW_RETRY = 60.0


class CredentialsError(Exception):
    """The node has no usable credentials and cannot get any (the message says what to do)."""


class NodeCredentials:
    def __init__(
        self,
        node_name: str,
        data_dir: Path,
        *,
        token: str = "",
        join_addresses: list[str],
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.identity = Identity(Role.NODE, node_name)
        self.directory = data_dir / PKI_DIR
        self.join_addresses = join_addresses
        self._token_text = token
        self._now = now
        self.credentials: Credentials | None = None
        self.facts: CertificateFacts | None = None
        self.backoff = ExponentialBackoff(initial=0.5, cap=10.0)

    def token(self) -> JoinToken | None:
        if not self._token_text:
            return None
        try:
            return parse_token(self._token_text)
        except TokenFormatError as e:
            raise CredentialsError(f"--token: {e}") from e

    def saved(self) -> tuple[Credentials | None, CertificateFacts | None, str]:
        """The saved credentials and their facts if usable now, else Nones and why not."""
        try:
            saved = Credentials.load(self.directory, verify=False)
            facts = CertificateFacts.of_file(self.directory / CERT_FILE) if saved is not None else None
        except CertificateError as e:
            return None, None, f"the credentials in {self.directory} are damaged ({e})"
        if saved is None or facts is None:
            return None, None, f"no node certificate in {self.directory}"
        if facts.identity != self.identity:
            return (
                None,
                None,
                (f"the certificate in {self.directory} is for {facts.identity}, not node {self.identity.name}"),
            )
        if facts.expired(self._now()):
            return None, None, f"the node certificate in {self.directory} expired"
        return saved, facts, ""

    async def ensure(self) -> Credentials:
        """Usable credentials: the saved ones, or new ones from a join with the token."""
        token = self.token()
        saved, facts, why = self.saved()
        if saved is not None and (token is None or _pins(saved, token)):
            self.credentials, self.facts = saved, facts
            return saved
        if token is None:
            raise CredentialsError(f"{why}: give --token with a join token (`corral token create` on the server)")
        if saved is not None:
            why = "the token pins another cluster CA than the saved certificate's"
        log.info("joining", node=self.identity.name, reason=why, join=",".join(self.join_addresses))
        self.adopt(await self._join(token))
        assert self.credentials is not None
        return self.credentials

    def adopt(self, credentials: Credentials) -> None:
        """Use (and save) these credentials from now on."""
        credentials.save(self.directory)
        self.credentials = credentials
        self.facts = CertificateFacts.of_file(self.directory / CERT_FILE)

    async def _join(self, token: JoinToken) -> Credentials:
        from corral.common.pki import join  # loads `cryptography`: only to join
        from corral.common.pki.join import CaMismatchError, JoinError, JoinUnreachableError

        rng = random.Random()
        attempt = 0
        while True:
            address = self.join_addresses[attempt % len(self.join_addresses)]
            try:
                credentials = await join.join(address, token, self.identity.name)
            except JoinUnreachableError as e:
                delay = self.backoff.next_delay(min(attempt, 20), rng)
                log.warning("join_server_unreachable", join=address, error=str(e), retry_in=round(delay, 2))
                attempt += 1
                await asyncio.sleep(delay)
                continue
            except CaMismatchError as e:
                raise CredentialsError(str(e)) from e
            except JoinError as e:
                raise CredentialsError(
                    f"the server at {address} refused to let node {self.identity.name} join: {e}"
                ) from e
            log.info(
                "joined",
                node=self.identity.name,
                join=address,
                expires=credentials.certificate().not_valid_after_utc.isoformat(),
            )
            return credentials

    async def current(self) -> Credentials:
        """The credentials for the next session: joined again with the token when they expired meanwhile."""
        if self.credentials is None or self.facts is None or self.facts.expired(self._now()):
            return await self.ensure()
        return self.credentials

    async def renew_forever(self, channel: grpc.aio.Channel) -> None:
        """Renew at two thirds of the certificate's lifetime, over this session's channel."""
        while True:
            current = await self.current()
            assert self.facts is not None
            wait = (self.facts.renew_at() - self._now()).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            from corral.common.pki import join  # loads `cryptography`: only to renew

            try:
                renewed = await join.renew(channel, current)
            except (grpc.aio.AioRpcError, CertificateError) as e:
                log.warning(
                    "certificate_renewal_failed", node=self.identity.name, error=str(e)[:200], retry_in=RENEW_RETRY
                )
                await asyncio.sleep(RENEW_RETRY)
                continue
            self.adopt(renewed)
            log.info("certificate_renewed", node=self.identity.name, expires=self.facts.not_after.isoformat())


def _pins(saved: Credentials, token: JoinToken) -> bool:
    """Whether the token is for the cluster whose CA signed the saved certificate."""
    try:
        der = ssl.PEM_cert_to_DER_cert(saved.ca.decode("ascii", "replace"))
    except ValueError:
        return False
    return hashlib.sha256(der).hexdigest() == token.ca_hash
