"""The running agent never loads the `cryptography` package (about 8 MB): it
reads its own certificate with the standard library."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from corral.common.pki import certs
from corral.common.pki.credentials import Credentials
from corral.common.pki.identity import CertificateFacts, Identity, Role

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def test_the_agent_command_and_its_session_do_not_import_cryptography() -> None:
    code = (
        "import sys; sys.modules['rich'] = None\n"
        "import corral.cli.main, corral.cli.agent_cmd, agent.main, agent.node.credentials, agent.node.session\n"
        "print('cryptography' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert result.stdout.strip() == "False"


def test_facts_read_with_the_standard_library_match_the_certificate(tmp_path: Path) -> None:
    ca_key, ca = certs.create_ca(NOW)
    key = certs.new_key()
    cert = certs.issue_client(ca_key, ca, key.public_key(), Identity(Role.NODE, "edge-7"), NOW, dt.timedelta(days=30))
    Credentials(certs.cert_pem(ca), certs.cert_pem(cert), certs.key_pem(key)).save(tmp_path)
    facts = CertificateFacts.of_file(tmp_path / "client.crt")
    assert facts.identity == Identity(Role.NODE, "edge-7")
    assert facts.not_after == cert.not_valid_after_utc
    assert facts.renew_at() == certs.renew_at(cert) == NOW + dt.timedelta(days=20)
    assert not facts.expired(NOW) and facts.expired(NOW + dt.timedelta(days=30))
    # Loading without the X.509 library still refuses a key that is not the certificate's.
    assert Credentials.load(tmp_path, verify=False) is not None
    (tmp_path / "client.key").write_bytes(certs.key_pem(certs.new_key()))
    with pytest.raises(certs.CertificateError, match="does not match"):
        Credentials.load(tmp_path, verify=False)
