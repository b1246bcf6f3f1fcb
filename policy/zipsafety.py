"""Zip safety, one module for every reader (issue 15 item 1): the attachment rules
(policy/attachments.py) and the IHE_XDM reader (dossier_bridge/xdm.py) ask the same
questions of the same bytes, and answer with their own words.

Two checks, both before zipfile is trusted with anything:
- `directory_problem`: the end record and the central directory read raw (APPNOTE
  §4.3.12-§4.3.16), the way zipfile finds them, so that both count the same directory:
  too many entries (zipfile builds one ZipInfo per record: a 25 MB zip of empty records
  would cost hundreds of MB), Zip64 (a message-sized package never needs it, and it
  moves the directory out of this count), a multi-volume archive (disk numbers not 0:
  the parts we would need are not in the message).
- `entry_problem`: one central-directory entry: unsafe names (NUL, empty, backslash,
  absolute, drive letter, ".."), symbolic links, encryption, compression methods other
  than stored and deflate.
Entry names are never echoed: they may carry a patient's name. Pure (stdlib only)."""
from __future__ import annotations

import re
import stat
import struct
import zipfile
from dataclasses import dataclass

EOCD_SIG = b"PK\x05\x06"  # APPNOTE §4.3.16
EOCD_SIZE = 22
ZIP64_LOCATOR_SIG = b"PK\x06\x07"  # APPNOTE §4.3.15, just before the end record
CENTRAL_SIG = b"PK\x01\x02"  # APPNOTE §4.3.12
CENTRAL_SIZE = 46
_DRIVE_RE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ZipProblem:
    # not_zip, bad_directory (no readable directory: the caller may leave it to zipfile),
    # zip64, multi_volume, too_many; nul, empty_name, backslash, absolute, drive, dotdot,
    # symlink, encrypted, method
    code: str
    fr: str  # French without accents (SMTP replies)
    en: str


def directory_problem(data: bytes, max_entries: int) -> ZipProblem | None:
    """Why the raw central directory of `data` is refused, or None."""
    if len(data) < EOCD_SIZE:
        return ZipProblem("not_zip", "pas une archive zip", "not a zip file")
    if data[-EOCD_SIZE:-EOCD_SIZE + 4] == EOCD_SIG and data[-2:] == b"\x00\x00":
        pos = len(data) - EOCD_SIZE
    else:
        pos = data.rfind(EOCD_SIG, max(0, len(data) - EOCD_SIZE - 0xFFFF))
        if pos < 0 or len(data) - pos < EOCD_SIZE:
            return ZipProblem("not_zip", "pas une archive zip", "not a zip file")
    if pos >= 20 and data[pos - 20:pos - 16] == ZIP64_LOCATOR_SIG:
        return ZipProblem("zip64", "format Zip64 non accepte", "Zip64 not accepted")
    disk, cd_disk, _, total, size_cd, _, _ = struct.unpack("<HHHHIIH", data[pos + 4:pos + EOCD_SIZE])
    if disk or cd_disk:
        return ZipProblem("multi_volume", "archive en plusieurs volumes", "multi-volume archive")
    too_many = ZipProblem("too_many", f"plus de {max_entries} fichiers", f"more than {max_entries} files")
    if total > max_entries:
        return too_many
    offset = pos - size_cd
    if offset < 0:
        return ZipProblem("bad_directory", "repertoire central illisible", "bad central directory")
    count = 0
    while offset + CENTRAL_SIZE <= pos and data[offset:offset + 4] == CENTRAL_SIG:
        name_len, extra_len, comment_len = struct.unpack("<HHH", data[offset + 28:offset + 34])
        offset += CENTRAL_SIZE + name_len + extra_len + comment_len
        count += 1
        if count > max_entries:
            return too_many
    return None


def entry_problem(info: zipfile.ZipInfo) -> ZipProblem | None:
    """Why one central-directory entry is refused, or None."""
    raw = info.orig_filename  # before zipfile cuts it at a NUL
    name = info.filename
    if "\x00" in raw:
        return ZipProblem("nul", "NUL", "NUL")
    if not name:
        return ZipProblem("empty_name", "nom vide", "empty name")
    if "\\" in raw:
        return ZipProblem("backslash", "barre oblique inverse", "backslash")
    if name.startswith("/"):
        return ZipProblem("absolute", "chemin absolu", "absolute path")
    if _DRIVE_RE.match(name):
        return ZipProblem("drive", "lettre de lecteur", "drive letter")
    if ".." in name.split("/"):
        return ZipProblem("dotdot", "'..'", "'..'")
    if stat.S_ISLNK(info.external_attr >> 16):
        return ZipProblem("symlink", "lien symbolique", "symbolic link")
    if info.flag_bits & 0x41:  # APPNOTE §4.4.4: bit 0 encrypted, bit 6 strong encryption
        return ZipProblem("encrypted", "chiffre", "encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return ZipProblem("method", f"methode de compression {info.compress_type} non acceptee",
                          f"compression method {info.compress_type} not accepted")
    return None


UNSAFE_NAME = frozenset({"nul", "empty_name", "backslash", "absolute", "drive", "dotdot"})
