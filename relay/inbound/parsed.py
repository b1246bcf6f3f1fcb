"""The message parsed once: the object itself is pure and lives in policy/parsed.py
(dossier_bridge reads it too, and may not import relay); the inbound pipeline parses
through `parse` here and nowhere else."""
from __future__ import annotations

from policy.parsed import MessageFacts, ParsedMessage, parse

__all__ = ["MessageFacts", "ParsedMessage", "parse"]
