"""policy/zipsafety.py: the attachment rules and the IHE_XDM reader refuse the same
zips (issue 15: the two copies had drifted, multi-volume refused by one only)."""
from __future__ import annotations

import io
import struct
import zipfile

import pytest

from dossier_bridge.xdm import XdmError, read_xdm
from policy.attachments import AttachmentLimits, check_zip
from policy.decisions import Decision
from policy.zipsafety import EOCD_SIZE, directory_problem, entry_problem

LIMITS = AttachmentLimits()


def small_zip(names: tuple[str, ...] = ("IHE_XDM/SUBSET01/METADATA.XML", "README.TXT")) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            archive.writestr(name, b"<x/>")
    return buffer.getvalue()


def multi_volume(data: bytes, disk: int = 1, cd_disk: int = 0) -> bytes:
    pos = len(data) - EOCD_SIZE
    return data[:pos + 4] + struct.pack("<HH", disk, cd_disk) + data[pos + 8:]


@pytest.mark.parametrize("disk, cd_disk", [(1, 0), (0, 1), (2, 2)])
def test_a_multi_volume_archive_is_refused_by_both_readers(disk: int, cd_disk: int) -> None:
    data = multi_volume(small_zip(), disk, cd_disk)
    problem = directory_problem(data, LIMITS.zip_max_entries)
    assert problem is not None and problem.code == "multi_volume"
    refusal = check_zip(data, LIMITS)
    assert isinstance(refusal, Decision) and (refusal.code, refusal.status) == (554, "5.6.1")
    assert "multi-volume" in refusal.en and "plusieurs volumes" in refusal.fr
    with pytest.raises(XdmError, match="multi-volume"):
        read_xdm(data, LIMITS)


def test_a_sound_archive_passes_both() -> None:
    data = small_zip()
    assert directory_problem(data, LIMITS.zip_max_entries) is None
    assert check_zip(data, LIMITS) is None
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert [entry_problem(i) for i in archive.infolist()] == [None, None]


@pytest.mark.parametrize("name, code", [("../x", "dotdot"), ("/etc/x", "absolute"), ("C:x", "drive"),
                                        ("a\\b", "backslash")])
def test_unsafe_names_are_one_rule(name: str, code: str) -> None:
    data = small_zip(("IHE_XDM/SUBSET01/METADATA.XML", name))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        problem = entry_problem(archive.infolist()[1])
    assert problem is not None and problem.code == code
    assert isinstance(check_zip(data, LIMITS), Decision)
    with pytest.raises(XdmError, match="zip entry #2"):
        read_xdm(data, LIMITS)
