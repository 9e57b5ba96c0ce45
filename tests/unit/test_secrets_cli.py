"""The CLI never prints a Secret's values unless asked."""

from datetime import UTC, datetime

import pytest

from corral.cli import printers, resources
from corral.cli.describe import describe
from protos import codec
from protos.corral.v1 import secret_pb2
from protos.kinds import by_kind

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def secret() -> secret_pb2.Secret:
    s = secret_pb2.Secret(api_version="v1", kind="Secret", type="Opaque")
    s.metadata.name, s.metadata.namespace = "db", "default"
    s.metadata.creation_timestamp.FromDatetime(datetime(2026, 11, 27, 11, 0, tzinfo=UTC))
    s.data["password"] = b"hunter2"
    s.data["user"] = b"admin"
    return s


def test_get_table_shows_type_and_count() -> None:
    info = by_kind("Secret")
    assert printers.table_headers(info, wide=False, all_namespaces=False) == ["NAME", "TYPE", "DATA", "AGE"]
    assert printers.table_row(info, secret(), NOW, wide=False, all_namespaces=False) == ["db", "Opaque", "2", "60m"]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
@pytest.mark.parametrize("single", [True, False])
def test_documents_are_redacted_unless_asked(fmt: str, single: bool, capsys: pytest.CaptureFixture[str]) -> None:
    resources._print([secret()], fmt, NOW, all_namespaces=False, single=single)
    out = capsys.readouterr().out
    assert "aHVudGVyMg" not in out and "hunter2" not in out
    assert "<redacted>" in out and "password" in out
    resources._print([secret()], fmt, NOW, all_namespaces=False, single=single, show_secrets=True)
    assert "aHVudGVyMg==" in capsys.readouterr().out


def test_describe_shows_key_names_and_sizes_only() -> None:
    text = describe(secret(), [], NOW)
    assert "password:  7 bytes" in text and "user:  5 bytes" in text
    assert "hunter2" not in text and "aHVudGVyMg" not in text


def test_manifests_take_base64_data_and_string_data_with_clear_errors() -> None:
    s, problems = codec.from_dict(
        {"metadata": {"name": "db"}, "data": {"password": "aHVudGVyMg=="}, "stringData": {"user": "admin"}},
        secret_pb2.Secret,
    )
    assert not problems and s.data["password"] == b"hunter2" and s.string_data["user"] == "admin"
    _, problems = codec.from_dict({"data": {"password": "not base64!"}}, secret_pb2.Secret)
    assert [p.path for p in problems] == ["data.password"] and "base64" in problems[0].message
