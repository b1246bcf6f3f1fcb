"""mailbox_store/crypto.py: master key, wrapped data keys, sealed blobs (DESIGN.md §6)."""
from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mailbox_store.crypto import (KEY_LEN, NONCE_LEN, CryptoError, MasterKey, blob_aad, new_data_key,
                                  open_sealed, seal)

INS_A = "279035121518989"
INS_B = "185052A00412368"


@pytest.fixture
def master() -> MasterKey:
    return MasterKey(os.urandom(KEY_LEN))


# --- wrapping data keys -----------------------------------------------------------------------

def test_wrap_unwrap_round_trip(master: MasterKey) -> None:
    dk = new_data_key()
    assert len(dk) == 32
    wrapped = master.wrap(dk, INS_A)
    assert dk not in wrapped
    assert len(wrapped) == NONCE_LEN + len(dk) + 16  # nonce || ciphertext || GCM tag
    assert master.unwrap(wrapped, INS_A) == dk


def test_unwrap_for_another_owner_fails(master: MasterKey) -> None:
    wrapped = master.wrap(new_data_key(), INS_A)
    with pytest.raises(CryptoError):
        master.unwrap(wrapped, INS_B)


def test_unwrap_with_another_master_key_fails(master: MasterKey) -> None:
    wrapped = master.wrap(new_data_key(), INS_A)
    with pytest.raises(CryptoError):
        MasterKey(os.urandom(KEY_LEN)).unwrap(wrapped, INS_A)


def test_unwrap_tampered_fails(master: MasterKey) -> None:
    wrapped = bytearray(master.wrap(new_data_key(), INS_A))
    wrapped[-1] ^= 1
    with pytest.raises(CryptoError):
        master.unwrap(bytes(wrapped), INS_A)


def test_same_key_bytes_same_behaviour() -> None:
    raw = os.urandom(KEY_LEN)
    a, b = MasterKey(raw), MasterKey(raw)
    assert a.key_id == b.key_id
    assert b.unwrap(a.wrap(b"k" * 32, INS_A), INS_A) == b"k" * 32
    assert MasterKey(os.urandom(KEY_LEN)).key_id != a.key_id


@pytest.mark.parametrize("n", [0, 16, 31, 33, 64])
def test_master_key_must_be_32_bytes(n: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        MasterKey(b"\x00" * n)


# --- sealed blobs ----------------------------------------------------------------------------------

@pytest.fixture
def aead() -> AESGCM:
    return AESGCM(new_data_key())


def test_seal_open_round_trip(aead: AESGCM) -> None:
    plain = b"Subject: compte rendu\r\n\r\nR\xe9sultats \x00\xff\r\n"
    aad = blob_aad(INS_A, "b1", "raw")
    sealed = seal(aead, plain, aad)
    assert plain not in sealed
    assert open_sealed(aead, sealed, aad) == plain


@pytest.mark.parametrize("other", [
    blob_aad(INS_A, "b2", "raw"),   # another blob id (row swapped)
    blob_aad(INS_B, "b1", "raw"),   # another owner (moved to another mailbox)
    blob_aad(INS_A, "b1", "part2"),  # another part
    b"",
])
def test_open_with_another_aad_fails(aead: AESGCM, other: bytes) -> None:
    sealed = seal(aead, b"secret", blob_aad(INS_A, "b1", "raw"))
    with pytest.raises(CryptoError):
        open_sealed(aead, sealed, other)


def test_open_with_another_data_key_fails(aead: AESGCM) -> None:
    aad = blob_aad(INS_A, "b1", "raw")
    sealed = seal(aead, b"secret", aad)
    with pytest.raises(CryptoError):
        open_sealed(AESGCM(new_data_key()), sealed, aad)


def test_nonces_differ_between_seals(aead: AESGCM) -> None:
    aad = blob_aad(INS_A, "b1", "raw")
    seals = [seal(aead, b"same plaintext", aad) for _ in range(50)]
    assert len({s[:NONCE_LEN] for s in seals}) == 50
    assert len(set(seals)) == 50
    assert all(open_sealed(aead, s, aad) == b"same plaintext" for s in seals)


def test_blob_aad_distinguishes_fields() -> None:
    assert len({blob_aad(INS_A, "b1", "raw"), blob_aad(INS_B, "b1", "raw"),
                blob_aad(INS_A, "b2", "raw"), blob_aad(INS_A, "b1", "part")}) == 4


@pytest.mark.parametrize("truncated", [b"", b"\x01\x02\x03"])
@pytest.mark.parametrize("which", ["open_sealed", "unwrap"])
def test_truncated_ciphertext_raises_crypto_error(aead: AESGCM, master: MasterKey, truncated: bytes,
                                                  which: str) -> None:
    with pytest.raises(CryptoError):
        if which == "open_sealed":
            open_sealed(aead, truncated, blob_aad(INS_A, "b1", "raw"))
        else:
            master.unwrap(truncated, INS_A)


def test_short_but_nonce_sized_ciphertext_raises_crypto_error(aead: AESGCM, master: MasterKey) -> None:
    # 8..28 bytes: a nonce without a whole tag
    for n in (8, 12, 20, 27):
        with pytest.raises(CryptoError):
            open_sealed(aead, os.urandom(n), blob_aad(INS_A, "b1", "raw"))
        with pytest.raises(CryptoError):
            master.unwrap(os.urandom(n), INS_A)


# --- master key file ----------------------------------------------------------------------------------

def test_generate_creates_0600_file_that_loads(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    mk = MasterKey.generate(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = base64.b64decode(path.read_text().strip(), validate=True)
    assert len(raw) == KEY_LEN
    loaded = MasterKey.load(path)
    assert loaded.key_id == mk.key_id
    assert loaded.unwrap(mk.wrap(b"d" * 32, INS_A), INS_A) == b"d" * 32


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    MasterKey.generate(path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        MasterKey.generate(path)
    assert path.read_bytes() == before


def test_two_generated_keys_differ(tmp_path: Path) -> None:
    a = MasterKey.generate(tmp_path / "a.key")
    b = MasterKey.generate(tmp_path / "b.key")
    assert (tmp_path / "a.key").read_bytes() != (tmp_path / "b.key").read_bytes()
    assert a.key_id != b.key_id


@pytest.mark.parametrize("content", ["not base64 !!", base64.b64encode(b"short").decode()])
def test_load_bad_file_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "master.key"
    path.write_text(content)
    with pytest.raises(ValueError):
        MasterKey.load(path)


def test_load_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read master key"):
        MasterKey.load(tmp_path / "absent.key")


# --- pseudonyms for logs ---------------------------------------------------------------------------------

def test_pseudonym_stable_keyed_and_not_the_ins() -> None:
    raw = os.urandom(KEY_LEN)
    p = MasterKey(raw).pseudonym(INS_A)
    assert p == MasterKey(raw).pseudonym(INS_A)  # stable for one key
    assert len(p) == 16
    assert p != MasterKey(os.urandom(KEY_LEN)).pseudonym(INS_A)  # differs between keys
    assert p != MasterKey(raw).pseudonym(INS_B)
    assert INS_A not in p
    plain = hashlib.sha256(INS_A.encode()).hexdigest()
    assert p != plain and p != plain[:16] and p not in plain
