"""Encryption at rest: card codes, fixed delivery content and credentials, from ENCRYPTION_KEYS.

ENCRYPTION_KEYS is a list of Fernet keys, newest first. Two uses:

- Secrets (payment credentials, supplier keys): `MultiFernet`, as text.
- Card codes: AES-256-GCM with a key derived (HKDF-SHA256) from each Fernet key — ten times
  faster than Fernet per value, which matters for a million-code import. A blob is
  `0x01 | key id (4 bytes) | nonce (12) | ciphertext+tag`; the key id picks the key to decrypt
  with, so rotation (`kameng keys rotate`) can re-encrypt old blobs while both keys work.

Duplicates are found without decrypting through a keyed fingerprint (BLAKE2b-128). Its key is
random, generated once and stored encrypted in `platform_secrets`, so fingerprints survive key
rotation unchanged.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from sqlalchemy import DateTime, LargeBinary, String, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db

BLOB_VERSION = b"\x01"
NONCE_BYTES = 12
KEY_ID_BYTES = 4
FINGERPRINT_BYTES = 16


class PlatformSecret(db.Model):
    """Small secrets the platform generates for itself, encrypted with ENCRYPTION_KEYS."""

    __tablename__ = "platform_secrets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DecryptionError(RuntimeError):
    """A blob cannot be decrypted with any configured key (a key was removed too early)."""


def _derive(fernet_key: str, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
        fernet_key.encode() if isinstance(fernet_key, str) else fernet_key
    )


class Keyring:
    """The keys of one app, derived once from ENCRYPTION_KEYS."""

    def __init__(self, fernet_keys: list[str]):
        if not fernet_keys:
            raise ValueError("no encryption keys configured")
        self.fernet = MultiFernet([Fernet(k) for k in fernet_keys])
        self._aead: dict[bytes, AESGCM] = {}
        self.key_ids: list[bytes] = []
        for key in fernet_keys:
            derived = _derive(key, b"kameng.card-codes.v1")
            key_id = hashlib.sha256(derived).digest()[:KEY_ID_BYTES]
            self._aead[key_id] = AESGCM(derived)
            self.key_ids.append(key_id)
        self.primary_id = self.key_ids[0]
        self._fingerprint_key: bytes | None = None
        self._lock = threading.Lock()

    # -- card codes and other values kept as bytes ---------------------------------------------

    def encrypt_many(self, values: list[str]) -> list[bytes]:
        """Encrypt many values with the newest key (one random read for all the nonces)."""
        aead = self._aead[self.primary_id]
        head = BLOB_VERSION + self.primary_id
        nonces = os.urandom(NONCE_BYTES * len(values))
        out = []
        for i, value in enumerate(values):
            nonce = nonces[i * NONCE_BYTES:(i + 1) * NONCE_BYTES]
            out.append(head + nonce + aead.encrypt(nonce, value.encode("utf-8"), None))
        return out

    def encrypt(self, value: str) -> bytes:
        return self.encrypt_many([value])[0]

    def decrypt(self, blob: bytes) -> str:
        blob = bytes(blob)
        if blob[:1] != BLOB_VERSION:
            raise DecryptionError("unknown encrypted value format")
        key_id = blob[1:1 + KEY_ID_BYTES]
        aead = self._aead.get(key_id)
        if aead is None:
            raise DecryptionError("encrypted with a key that is no longer in ENCRYPTION_KEYS")
        start = 1 + KEY_ID_BYTES
        nonce = blob[start:start + NONCE_BYTES]
        try:
            return aead.decrypt(nonce, blob[start + NONCE_BYTES:], None).decode("utf-8")
        except Exception as error:  # InvalidTag: tampered or corrupted
            raise DecryptionError("encrypted value failed its integrity check") from error

    def needs_rotation(self, blob: bytes) -> bool:
        return bytes(blob[1:1 + KEY_ID_BYTES]) != self.primary_id

    # -- secrets kept as text ----------------------------------------------------------------

    def encrypt_secret(self, value: str) -> str:
        return self.fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt_secret(self, token: str) -> str:
        try:
            return self.fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken as error:
            raise DecryptionError("secret cannot be decrypted with ENCRYPTION_KEYS") from error

    # -- fingerprints --------------------------------------------------------------------------

    def fingerprint_key(self) -> bytes:
        if self._fingerprint_key is None:
            with self._lock:
                if self._fingerprint_key is None:
                    self._fingerprint_key = _load_or_create_secret(self, "code-fingerprint-key")
        return self._fingerprint_key

    def fingerprinter(self):
        """A function value -> 16-byte keyed fingerprint (BLAKE2b MAC)."""
        key = self.fingerprint_key()

        def fingerprint(value: str) -> bytes:
            return hashlib.blake2b(
                value.encode("utf-8"), key=key, digest_size=FINGERPRINT_BYTES
            ).digest()

        return fingerprint


def _load_or_create_secret(keyring: Keyring, name: str) -> bytes:
    """A random 32-byte secret stored (encrypted) under `name`, created on first use."""
    engine = db.engine  # its own connection: never part of the caller's transaction
    with engine.connect() as conn:
        stored = conn.scalar(select(PlatformSecret.value).where(PlatformSecret.name == name))
        if stored is None:
            token = keyring.fernet.encrypt(secrets.token_bytes(32))
            try:
                conn.execute(PlatformSecret.__table__.insert().values(name=name, value=token))
                conn.commit()
            except IntegrityError:  # another process created it first
                conn.rollback()
            stored = conn.scalar(select(PlatformSecret.value).where(PlatformSecret.name == name))
    try:
        return keyring.fernet.decrypt(bytes(stored))
    except InvalidToken as error:
        raise DecryptionError(f"platform secret '{name}' cannot be decrypted") from error


def keyring() -> Keyring:
    """The current app's keyring (built once per app)."""
    ring = current_app.extensions.get("kameng.keyring")
    if ring is None:
        ring = Keyring(current_app.config["ENCRYPTION_KEYS"])
        current_app.extensions["kameng.keyring"] = ring
    return ring
