"""Encryption at rest of chosen values (Secrets) with AES-256-GCM.

A sealed value is ``b"corral:aesgcm:v1:" + key_id + b":" + nonce + ciphertext``:
the header lets a read tell an encrypted value from a plain one (objects
written before encryption was on stay readable), ``key_id`` (the first 8 hex
digits of the SHA-256 of the key) names the key that sealed it, and every write
draws a fresh random 12-byte nonce. The store key is bound as associated data,
so a sealed value copied to another key does not decrypt either.

The key is 32 random bytes in ``secrets.key`` under the server's data dir,
created on first start (file 0600, directory 0700).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from controlplane.store.errors import DecryptionError

HEADER = b"corral:aesgcm:v1:"
KEY_FILE = "secrets.key"
KEY_BYTES = 32
NONCE_BYTES = 12
_KEY_ID_CHARS = 8


class KeyFileError(Exception):
    """The key file cannot be created or read, or does not hold a 32-byte key."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:_KEY_ID_CHARS]


class Encrypter:
    """Seals and opens values with one AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise KeyFileError(f"an encryption key is {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)
        self.key_id = key_id(key)
        self._prefix = HEADER + self.key_id.encode("ascii") + b":"

    @staticmethod
    def is_sealed(value: bytes) -> bool:
        return value.startswith(HEADER)

    def seal(self, key: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return self._prefix + nonce + self._aead.encrypt(nonce, plaintext, key.encode())

    def open(self, key: str, value: bytes) -> bytes:
        """The plaintext of a sealed value; plain values are returned as they are."""
        if not self.is_sealed(value):
            return value
        rest = value[len(HEADER) :]
        found_id, sep, body = rest.partition(b":")
        if not sep or len(found_id) != _KEY_ID_CHARS:
            raise DecryptionError(key, "malformed encryption header")
        if found_id.decode("ascii", "replace") != self.key_id:
            raise DecryptionError(
                key,
                f"sealed with key {found_id.decode('ascii', 'replace')}, this server's "
                f"{KEY_FILE} is key {self.key_id} (restore the right {KEY_FILE})",
            )
        if len(body) < NONCE_BYTES + 16:
            raise DecryptionError(key, "value too short (truncated or corrupt)")
        try:
            return self._aead.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], key.encode())
        except InvalidTag as e:
            raise DecryptionError(key, "authentication failed (value corrupt or tampered with)") from e


def load_or_create_key(data_dir: Path) -> bytes:
    """The key in ``data_dir/secrets.key``, created (32 random bytes, 0600) when absent."""
    path = data_dir / KEY_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(data_dir, 0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = path.read_bytes()
        else:
            key = os.urandom(KEY_BYTES)
            with os.fdopen(fd, "wb") as f:
                f.write(key)
                f.flush()
                os.fsync(f.fileno())
    except OSError as e:
        raise KeyFileError(f"cannot create or read the encryption key {path}: {e}") from e
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"{path} holds {len(key)} bytes, an encryption key is {KEY_BYTES}")
    return key
