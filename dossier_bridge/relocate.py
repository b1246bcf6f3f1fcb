"""Documents filed before byte ranges (issue 15 item 4) get one: their locator
"part:N[|xdm:...]" becomes "part:N|at:S-E|cte:...[|xdm:...]" (dossier._locator).

Why not an Alembic migration: the range is read in the decrypted message, and a
migration has no keys. The daemon runs this once at start, in the background, in
batches (at most BATCH messages in memory, a bounded number of batches); a document
whose part is no longer found, or whose content would change, keeps its locator and
its row is logged, never rewritten."""
from __future__ import annotations

import asyncio

import structlog

from dossier_bridge.dossier import DocumentUnreadable, _locator, locate
from mailbox_store.store import Store
from policy.attachments import AttachmentLimits, mime_parts
from policy.decisions import Decision

log = structlog.get_logger("dossier.relocate")
BATCH = 50
MAX_BATCHES = 10_000  # 500,000 documents: every loop bounded


def ranged(message: bytes, locator: str, limits: AttachmentLimits) -> str | None:
    """The range locator naming the same content as `locator`, or None. CPU-bound."""
    where = dict(item.split(":", 1) for item in locator.split("|") if ":" in item)
    parts = mime_parts(message, limits)
    if isinstance(parts, Decision):
        return None
    part = next((p for p in parts if p.path == where.get("part")), None)
    if part is None or part.span is None:
        return None
    new = _locator(part) + (f"|xdm:{where['xdm']}" if "xdm" in where else "")
    try:  # the same bytes through both locators, or nothing changes
        same = locate(message, new, limits) == locate(message, locator, limits)
    except DocumentUnreadable:
        return None
    return new if same else None


async def relocate_documents(store: Store, limits: AttachmentLimits) -> int:
    """Give every part-located document its byte range; the number rewritten. Never
    raises but on cancellation: a store that fails is logged, and the next start
    resumes (a background task's exception must not reach stderr)."""
    done = 0
    after = ""
    try:
        for _ in range(MAX_BATCHES):
            rows = await store.part_located(after, BATCH)
            if not rows:
                break
            for doc_id, locator, message in rows:
                after = doc_id
                new = await asyncio.to_thread(ranged, message, locator, limits)
                if new is None:
                    log.warning("dossier.relocate_skipped", document=doc_id)
                    continue
                done += await store.relocate_document(doc_id, locator, new)
    except Exception as e:  # noqa: BLE001 - logged by class name only (no SQL, no content)
        log.error("dossier.relocate_failed", error=type(e).__name__, relocated=done)
        return done
    if done:
        log.info("dossier.relocated", documents=done)
    return done
