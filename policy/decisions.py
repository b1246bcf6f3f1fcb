"""The `Decision` type: what a protocol front answers, decided by policy.

Every refusal carries an SMTP reply code, an enhanced status code (RFC 3463) and a
text in French first, English after a " / " (STYLE.md), so a professional's operator
can turn it into a "Message non distribue" notice a person understands. Reply texts
are printable US-ASCII (RFC 5321 §4.2), hence French without accents.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Decision:
    code: int
    status: str  # RFC 3463 enhanced status code, e.g. "5.7.1"
    fr: str
    en: str
    rule: str  # short machine name of the rule, for logs and metrics

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 400

    def smtp(self) -> str:
        """The reply line, with the enhanced status code (RFC 2034)."""
        return f"{self.code} {self.status} {self.fr} / {self.en}"


def ok(rule: str = "ok", en: str = "OK", fr: str = "OK") -> Decision:
    return Decision(250, "2.1.5" if rule == "rcpt" else "2.0.0", fr, en, rule)


STARTTLS_REQUIRED = Decision(
    530, "5.7.0", "STARTTLS obligatoire avant MAIL", "Must issue a STARTTLS command first",
    "starttls_required")
CLIENT_CERT_REQUIRED = Decision(
    530, "5.7.0", "Certificat client IGC-Sante obligatoire",
    "A client certificate chaining to IGC-Sante is required", "client_cert_required")
SENDER_NOT_TRUSTED = Decision(
    550, "5.7.1", "Domaine expediteur absent de la liste blanche MSSante pour ce certificat",
    "Sender domain not on the MSSante trust list for this certificate", "sender_not_trusted")
RELAY_DENIED = Decision(
    550, "5.7.1", "Relais refuse: seul le domaine patient.mssante.fr est servi ici",
    "Relay access denied: only patient.mssante.fr is served here", "relay_denied")
BAD_INS = Decision(
    501, "5.1.3", "Adresse patient invalide: matricule INS ou cle incorrects",
    "Bad patient address: malformed INS or wrong key", "bad_ins")
UNKNOWN_MAILBOX = Decision(
    550, "5.1.1", "Boite aux lettres patient inconnue",
    "Unknown patient mailbox", "unknown_mailbox")
MAILBOX_DISABLED = Decision(
    550, "5.2.1", "Boite aux lettres patient fermee ou opposee",
    "Patient mailbox closed or opposed", "mailbox_disabled")
TOO_MANY_RECIPIENTS = Decision(
    452, "4.5.3", "Trop de destinataires", "Too many recipients", "too_many_recipients")
MESSAGE_TOO_BIG = Decision(
    552, "5.3.4", "Message trop volumineux (25 Mo au plus)",
    "Message size exceeds fixed maximum message size (25 MB)", "message_too_big")
BARE_LINE_ENDING = Decision(
    500, "5.5.2", "CR ou LF isole interdit dans DATA (RFC 5321 section 2.3.8)",
    "Bare CR or LF in DATA refused (RFC 5321 section 2.3.8)", "bare_line_ending")
BAD_HELO = Decision(
    501, "5.5.4", "HELO/EHLO attend un nom de domaine ou une adresse litterale",
    "HELO/EHLO needs a domain name or an address literal", "bad_helo")
TLS_ALREADY_ACTIVE = Decision(
    503, "5.5.1", "TLS deja actif", "TLS already active", "tls_already_active")
SHUTTING_DOWN = Decision(
    421, "4.3.2", "Arret du service, reessayez plus tard",
    "Service shutting down, try again later", "shutting_down")
TOO_MANY_CONNECTIONS = Decision(
    421, "4.7.0", "Trop de connexions depuis cette adresse",
    "Too many connections from this address", "too_many_connections")
STORE_UNAVAILABLE = Decision(
    451, "4.3.0", "Erreur temporaire du stockage, reessayez plus tard",
    "Temporary storage failure, try again later", "store_unavailable")
# RFC 3463 §3.4 X.3.1 "mail system full" with RFC 5321 §4.2.3's 452 "insufficient
# system storage": the sender keeps the message and retries.
STORE_FULL = Decision(
    452, "4.3.1", "Espace de stockage insuffisant, reessayez plus tard",
    "Insufficient system storage, try again later", "store_full")
# The same X.3.1 when the bytes all SMTP sessions may hold at once are taken
# (relay/smtp/budget.py): the sender retries a little later.
BYTES_IN_FLIGHT = Decision(
    452, "4.3.1", "Trop de messages en cours de reception, reessayez plus tard",
    "Too many messages being received at once, try again later", "bytes_in_flight")
# An exception nothing else names: RFC 5321 451 "local error in processing"
LOCAL_ERROR = Decision(
    451, "4.3.0", "Erreur locale, reessayez plus tard", "Local error in processing, try again later",
    "local_error")
# RFC 3463 §3.5 X.4.2 "bad connection": the transfer outlived mx.data_timeout
DATA_TOO_SLOW = Decision(
    451, "4.4.2", "Transfert DATA trop long, connexion fermee",
    "DATA transfer took too long, closing connection", "data_timeout")
# RFC 4954 §6: 454 4.7.0 "temporary authentication failure" (the store could not answer)
AUTH_UNAVAILABLE = Decision(
    454, "4.7.0", "Echec temporaire de l'authentification, reessayez plus tard",
    "Temporary authentication failure, try again later", "auth_unavailable")
