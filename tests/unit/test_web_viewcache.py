"""relay/web/viewcache.py: conversation views kept by sealed blob id, bounded in bytes,
given the asker's UID (copies share a blob), emptied when the attachment rules change."""
from __future__ import annotations

from policy.attachments import AttachmentLimits
from relay.web import mailview
from relay.web.viewcache import ViewCache


def _raw(n: int, body: str = "Bonjour") -> bytes:
    return (f"From: Dr Martin <dr.martin@test-operator.mssante.fr>\r\nTo: <279035121518989@patient.mssante.fr>\r\n"
            f"Subject: Message {n}\r\nMessage-ID: <m{n}@test-operator.mssante.fr>\r\n\r\n{body} {n}\r\n").encode()


def test_a_kept_view_comes_back_with_the_askers_uid() -> None:
    limits = AttachmentLimits()
    cache = ViewCache()
    view = mailview.full_view(7, _raw(1), limits)
    cache.put("blob-a", view, "<m1@test-operator.mssante.fr>", limits)
    assert "blob-a" in cache and "blob-b" not in cache
    got = cache.get("blob-a", 7, limits)
    assert got == (view, "<m1@test-operator.mssante.fr>")
    copy = cache.get("blob-a", 12, limits)  # a copy in another folder: same bytes, its own UID
    assert copy is not None and copy[0].summary.uid == 12 and copy[0].text == view.text
    assert cache.get("blob-b", 7, limits) is None


def test_bounded_in_bytes_least_recently_used_out() -> None:
    limits = AttachmentLimits()
    views = [mailview.full_view(n, _raw(n, "x" * 2000), limits) for n in range(20)]
    cache = ViewCache(max_bytes=60_000)
    for n, v in enumerate(views):
        cache.put(f"blob-{n}", v, None, limits)
        cache.get("blob-0", 0, limits)  # kept in use: never the one evicted
    assert cache.size <= 60_000
    assert 0 < len(cache) < 20
    assert "blob-0" in cache and "blob-19" in cache and "blob-1" not in cache
    huge = mailview.full_view(99, _raw(99, "y" * 100_000), limits)
    cache.put("blob-huge", huge, None, limits)  # larger than the whole cache: not kept
    assert "blob-huge" not in cache and cache.size <= 60_000


def test_other_attachment_rules_empty_it() -> None:
    limits = AttachmentLimits()
    cache = ViewCache()
    cache.put("blob-a", mailview.full_view(1, _raw(1), limits), None, limits)
    stricter = AttachmentLimits(max_part_bytes=1024)
    assert stricter != limits
    assert cache.get("blob-a", 1, stricter) is None and len(cache) == 0 and cache.size == 0
