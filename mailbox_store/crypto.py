"""Encryption at rest (DESIGN.md §6).

- A master key (32 random bytes, in a 0600 file outside the database) wraps one data
  key per mailbox with AES-256-GCM; the associated data binds the wrapped key to its
  mailbox, so a wrapped key copied onto another mailbox row fails to unwrap.
- A message's bytes are sealed once, whatever its number of recipients, with a fresh
  content key, a fresh 96-bit random nonce (NIST SP 800-38D §8.2.2) and its blob id as
  associated data. Each recipient's message row holds that content key sealed with the
  mailbox's data key, with (mailbox, blob id, "key") as associated data. A blob moved to
  another row fails to decrypt; a wrapped key moved to another mailbox or message fails
  to unwrap. (Sealing the bytes once per recipient cost recipients x size in memory:
  100 recipients of a 25 MB message held 2.5 GB.)
- Unwrapped data keys live only in memory (cached), never logged, never written.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_LEN = 12
TAG_LEN = 16  # AES-GCM tag (NIST SP 800-38D)
KEY_LEN = 32


class CryptoError(Exception):
    """Decryption failed: wrong key, tampered or misplaced ciphertext."""


RETIRED_DIR = "retired"  # beside the master key: keys rotated out, still able to unwrap


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"mssante-relay/master-key-id/" + key).hexdigest()[:16]


def _read_key(path: Path) -> bytes:
    try:
        raw = base64.b64decode(path.read_text().strip(), validate=True)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read master key {path}: {e}") from None
    if len(raw) != KEY_LEN:
        raise ValueError(f"cannot read master key {path}: not 32 bytes")
    return raw


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in this directory durable (POSIX: fsync the directory)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_key(path: Path, key: bytes) -> None:
    """A key file, 0600 from its creation, never over an existing one, on disk (fsynced,
    with its directory) before this returns: data will soon depend on it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(key).decode() + "\n")
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(path.parent)


class MasterKey:
    """The current master key, which wraps new data keys, plus the retired ones found in
    `retired/` beside it, which still unwrap data keys not yet re-wrapped (key
    rotation without downtime: `mssante-relay keys rotate`)."""

    def __init__(self, key: bytes, path: Path | None = None):
        if len(key) != KEY_LEN:
            raise ValueError("master key must be 32 bytes")
        self._aead = AESGCM(key)
        # key id: lets rotation (re-wrapping) tell which master key wrapped a data key
        self.key_id = _key_id(key)
        self._log_key = hmac.new(key, b"mssante-relay/log-pseudonym/v1", hashlib.sha256).digest()
        self._path = path
        self._retired: dict[str, AESGCM] = {}
        self._load_retired()

    def _load_retired(self) -> None:
        if self._path is None:
            return
        for f in sorted((self._path.parent / RETIRED_DIR).glob("*.key")):
            key = _read_key(f)
            self._retired[_key_id(key)] = AESGCM(key)

    def knows(self, key_id: str) -> bool:
        """Whether this key or a retired one beside it is `key_id`."""
        try:
            self._aead_for(key_id)
        except CryptoError:
            return False
        return True

    def _aead_for(self, key_id: str | None) -> AESGCM:
        if key_id is None or key_id == self.key_id:
            return self._aead
        if key_id not in self._retired:
            self._load_retired()  # rotated since we started: the retired key is on disk now
        if key_id in self._retired:
            return self._retired[key_id]
        if self._path is not None and self._path.exists():
            current = _read_key(self._path)
            if _key_id(current) == key_id:  # a rotation made it current under our feet
                self._retired[key_id] = AESGCM(current)
                return self._retired[key_id]
        raise CryptoError(f"no master key {key_id} here (current {self.key_id})")

    @classmethod
    def generate(cls, path: Path) -> "MasterKey":
        key = AESGCM.generate_key(bit_length=256)
        write_key(path, key)
        return cls(key, path)

    @classmethod
    def load(cls, path: Path) -> "MasterKey":
        return cls(_read_key(path), path)

    def wrap(self, data_key: bytes, owner: str) -> bytes:
        nonce = os.urandom(NONCE_LEN)
        return nonce + self._aead.encrypt(nonce, data_key, _owner_aad(owner))

    def unwrap(self, wrapped: bytes, owner: str, key_id: str | None = None) -> bytes:
        aead = self._aead_for(key_id)
        try:
            return aead.decrypt(wrapped[:NONCE_LEN], wrapped[NONCE_LEN:], _owner_aad(owner))
        except (InvalidTag, ValueError):  # ValueError: too short to hold a nonce
            raise CryptoError("data key does not unwrap with this master key for this mailbox") from None

    def pseudonym(self, ins: str) -> str:
        """Keyed hash of an INS for logs: stable within an instance, not reversible by
        enumerating the ~10^13 possible INS as a plain hash would be."""
        return hmac.new(self._log_key, ins.encode(), hashlib.sha256).hexdigest()[:16]


def _owner_aad(owner: str) -> bytes:
    return b"mssante-relay/data-key/v1/" + owner.encode()


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


CONTENT = "content"  # owner slot of a blob's own AAD: the content is shared, its key is not


def blob_aad(owner: str, blob_id: str, part: str) -> bytes:
    return f"mssante-relay/blob/v1/{owner}/{blob_id}/{part}".encode()


def seal(aead: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_LEN)
    return nonce + aead.encrypt(nonce, plaintext, aad)


def open_sealed(aead: AESGCM, sealed: bytes, aad: bytes) -> bytes:
    try:
        # a view, not a slice: a 25 MB message is not copied once more to be opened
        return aead.decrypt(sealed[:NONCE_LEN], memoryview(sealed)[NONCE_LEN:], aad)
    except (InvalidTag, ValueError):  # ValueError: too short to hold a nonce
        raise CryptoError("blob does not decrypt: tampered, or not where it was stored") from None


# The envelope of every stored content (a message, a document, a queued message): the
# bytes sealed once with a fresh content key bound to the blob id; the content key
# sealed for each mailbox that reads it, bound to that mailbox and blob.

def seal_blob(blob_id: str, plaintext: bytes) -> tuple[bytes, bytes]:
    """(content key, sealed bytes) of a new blob."""
    content_key = new_data_key()
    return content_key, seal(AESGCM(content_key), plaintext, blob_aad(CONTENT, blob_id, "raw"))


def seal_blob_parts(blob_id: str, parts: tuple[bytes, ...]) -> tuple[bytes, bytearray]:
    """seal_blob of the concatenation of `parts`, written straight into one buffer: the
    plaintext is never joined, and the sealed bytes are one copy (issue 15 §2: at most
    two copies of a message in memory, the received bytes and the sealed ones). The
    envelope is seal_blob's (nonce, ciphertext, tag), so open_blob reads it."""
    content_key = new_data_key()
    nonce = os.urandom(NONCE_LEN)
    encryptor = Cipher(algorithms.AES(content_key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(blob_aad(CONTENT, blob_id, "raw"))
    size = sum(len(p) for p in parts)
    # update_into wants block size - 1 bytes of room beyond what it writes
    out = bytearray(NONCE_LEN + size + TAG_LEN + 15)
    out[:NONCE_LEN] = nonce
    pos = NONCE_LEN
    with memoryview(out) as view:
        for part in parts:
            pos += encryptor.update_into(part, view[pos:])
        encryptor.finalize()
        view[pos:pos + TAG_LEN] = encryptor.tag
    del out[pos + TAG_LEN:]
    return content_key, out


class BlobSealer:
    """seal_blob for bytes that arrive in pieces (an APPEND literal): the same envelope
    (nonce, ciphertext, 16-byte tag; NIST SP 800-38D GCM), produced piece by piece so
    the plaintext is never whole in memory. `update` returns the sealed bytes to keep
    (the nonce comes first), `finish` the tag that ends them."""

    def __init__(self, blob_id: str) -> None:
        self.content_key = new_data_key()
        nonce = os.urandom(NONCE_LEN)
        self._encryptor = Cipher(algorithms.AES(self.content_key), modes.GCM(nonce)).encryptor()
        self._encryptor.authenticate_additional_data(blob_aad(CONTENT, blob_id, "raw"))
        self._head = nonce

    def update(self, plaintext: bytes) -> bytes:
        head, self._head = self._head, b""
        return head + self._encryptor.update(plaintext)

    def finish(self) -> bytes:
        head, self._head = self._head, b""
        return head + self._encryptor.finalize() + self._encryptor.tag


def wrap_content_key(data_key: AESGCM, owner: str, blob_id: str, content_key: bytes) -> bytes:
    return seal(data_key, content_key, blob_aad(owner, blob_id, "key"))


def open_blob(data_key: AESGCM, owner: str, blob_id: str, key_wrapped: bytes, sealed: bytes) -> bytes:
    content_key = open_sealed(data_key, key_wrapped, blob_aad(owner, blob_id, "key"))
    return open_sealed(AESGCM(content_key), sealed, blob_aad(CONTENT, blob_id, "raw"))
