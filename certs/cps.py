"""The CPS card (carte de professionnel de sante) through PC/SC, with pyscard (issue 18 §6).

What a professional's client needs from the card, and nothing more: list the readers, find
the card, read the authentication certificate, verify the PIN, and have the card sign
(RSASSA-PKCS1-v1_5 with SHA-256, the signature `POST /pro/session` checks).

Implementation notes:
- The commands are ISO/IEC 7816-4 ones as IAS-ECC cards (the CPS3 application) answer them:
  SELECT (A4), READ BINARY (B0), VERIFY (20), MSE SET (22), INTERNAL AUTHENTICATE (88) or
  PSO HASH + PSO COMPUTE DIGITAL SIGNATURE (2A). Which file, which PIN, which key: the
  `CardProfile` (relay.toml `[cps]`), because the values below come from public documentation
  and still have to be confirmed on a real test card (README, "Carte CPS").
- Every exchange runs inside one PC/SC transaction (SCardBeginTransaction): no other program
  can slip a command between our VERIFY and our signature.
- The PIN never leaves this module except inside the VERIFY APDU; it is never logged.
- Every failure is a `CardError` whose `message` is one line, French (no accents) then English,
  that the CLI prints as is. pyscard's own exception texts never reach the user.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# DigestInfo prefix of SHA-256 (RFC 8017 §9.2 note 1): what the card pads and signs when it is
# given the DigestInfo itself (INTERNAL AUTHENTICATE, client/server authentication).
SHA256_DIGESTINFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


@dataclass(frozen=True)
class CardProfile:
    """Where the card keeps what we need ([cps] in relay.toml; README says which are confirmed).

    aid: the CPS3 IAS-ECC application (contact mode), as published in ASIP Sante's CPS3
        driver for OpenSC (card-cps3.c, `cps3_aid_cps3`).
    cert_file: file identifier of the authentication certificate (EF, DER) inside that
        application; on a real card it is named in PKCS#15 EF.CDF: to confirm.
    pin_ref: VERIFY P2 of the holder's PIN (0x80 | n: a PIN local to the application).
    key_ref: private key reference given in MSE SET (tag 84).
    sign_mode: "internal_authenticate" (MSE SET AT, then INTERNAL AUTHENTICATE with the
        DigestInfo: the card's client/server authentication, as ASIP's driver does it) or
        "pso" (MSE SET DST, PSO HASH with the SHA-256 value, PSO COMPUTE DIGITAL SIGNATURE).
    algo_ref: MSE SET tag 80; IAS-ECC codes 0x02 = RSA PKCS#1 v1.5, 0x42 = the same with SHA-256
        (OpenSC iasecc.h). Used as given for the chosen sign_mode.
    pin_min/pin_max: the PIN's digits (a CPS PIN is 4 digits); a PIN outside them is refused
        before it costs a try.
    pin_pad_to: the VERIFY data is the PIN in ASCII padded with 0xFF to this length (0: no padding).
    """

    aid: bytes = bytes.fromhex("E828BD080F8025000001FF0010")
    cert_file: bytes = bytes.fromhex("D001")
    pin_ref: int = 0x81
    key_ref: int = 0x81
    sign_mode: str = "internal_authenticate"
    algo_ref: int = 0x02
    pin_min: int = 4
    pin_max: int = 8
    pin_pad_to: int = 8


SIGN_MODES = ("internal_authenticate", "pso")


def card_profile(table: object) -> CardProfile:
    """[cps] of relay.toml as a CardProfile; ValueError naming the bad field (`cps.aid: ...`)."""
    if not isinstance(table, dict):
        raise ValueError("cps: must be a table")
    d = CardProfile()
    unknown = set(table) - set(CardProfile.__dataclass_fields__)
    if unknown:
        raise ValueError(f"cps.{sorted(unknown)[0]}: unknown key")

    def hexbytes(key: str, lengths: range) -> bytes:
        v = table.get(key, getattr(d, key).hex().upper())
        try:
            raw = bytes.fromhex(v) if isinstance(v, str) else None
        except ValueError:
            raw = None
        if raw is None or len(raw) not in lengths:
            raise ValueError(f"cps.{key}: expected {lengths.start} to {lengths.stop - 1} bytes in hex, got {v!r}")
        return raw

    def byte(key: str, low: int = 0, high: int = 255) -> int:
        v = table.get(key, getattr(d, key))
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise ValueError(f"cps.{key}: expected an integer from {low} to {high}, got {v!r}")
        return v

    mode = table.get("sign_mode", d.sign_mode)
    if mode not in SIGN_MODES:
        raise ValueError(f"cps.sign_mode: expected one of {', '.join(SIGN_MODES)}, got {mode!r}")
    p = CardProfile(aid=hexbytes("aid", range(5, 17)), cert_file=hexbytes("cert_file", range(2, 3)),
                    pin_ref=byte("pin_ref"), key_ref=byte("key_ref"), sign_mode=mode,
                    algo_ref=byte("algo_ref"), pin_min=byte("pin_min", 1, 16), pin_max=byte("pin_max", 1, 16),
                    pin_pad_to=byte("pin_pad_to", 0, 16))
    if p.pin_max < p.pin_min:
        raise ValueError(f"cps.pin_max: must be >= cps.pin_min ({p.pin_min}), got {p.pin_max}")
    if p.pin_pad_to and p.pin_pad_to < p.pin_max:
        raise ValueError(f"cps.pin_pad_to: must be 0 or >= cps.pin_max ({p.pin_max}), got {p.pin_pad_to}")
    return p
MAX_CERT_BYTES = 8192  # a CPx certificate is under 2 KB; bound the READ BINARY loop
READ_CHUNK = 0xE7  # ASIP's CPS3 driver reads at most 0xE7 bytes per READ BINARY (max_recv_size)


class CardError(Exception):
    """One line for the professional, French (no accents) first, then ' / ' and English."""

    code = "card_error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NoService(CardError):
    code = "no_service"


class NoReader(CardError):
    code = "no_reader"


class UnknownReader(CardError):
    code = "unknown_reader"


class NoCard(CardError):
    code = "no_card"


class WrongPin(CardError):
    code = "wrong_pin"

    def __init__(self, tries_left: int):
        essais = "essai restant" if tries_left == 1 else "essais restants"
        tries = "try left" if tries_left == 1 else "tries left"
        super().__init__(f"code PIN incorrect, {tries_left} {essais} / wrong PIN, {tries_left} {tries}")
        self.tries_left = tries_left


class PinBlocked(CardError):
    code = "pin_blocked"

    def __init__(self) -> None:
        super().__init__("carte bloquee : code PIN bloque apres trop d'essais, faites-la debloquer "
                         "/ card blocked: PIN blocked after too many tries")


class BadPinFormat(CardError):
    code = "bad_pin_format"


class CardRefused(CardError):
    """A status word other than 9000 that no finer class explains."""

    code = "card_refused"

    def __init__(self, what: str, sw: int):
        fr, en = _SW_TEXTS.get(sw, ("refus de la carte", "card refused"))
        super().__init__(f"{what} : {fr} (SW {sw:04X}) / {en}")
        self.sw = sw


# ISO/IEC 7816-4 §5.6 status words, those a CPS answers to the commands above.
_SW_TEXTS: dict[int, tuple[str, str]] = {
    0x6700: ("longueur incorrecte", "wrong length"),
    0x6982: ("code PIN non verifie", "security status not satisfied"),
    0x6984: ("donnee de reference inutilisable", "reference data not usable"),
    0x6985: ("conditions d'utilisation non satisfaites", "conditions of use not satisfied"),
    0x6A80: ("donnees incorrectes", "incorrect data"),
    0x6A82: ("fichier ou application introuvable, verifiez [cps] dans la configuration",
             "file or application not found, check [cps] in the configuration"),
    0x6A86: ("parametres P1-P2 incorrects", "incorrect P1-P2"),
    0x6A88: ("cle ou code introuvable, verifiez [cps] dans la configuration",
             "referenced key or PIN not found, check [cps] in the configuration"),
    0x6B00: ("position hors du fichier", "offset outside the file"),
    0x6D00: ("commande non supportee", "instruction not supported"),
    0x6E00: ("classe non supportee", "class not supported"),
    0x6F00: ("erreur interne de la carte", "card internal error"),
}


def _check_pin_status(sw: int) -> None:
    """VERIFY's answers (ISO/IEC 7816-4 §11.5.6): 63Cx = x tries left, 6983 = blocked."""
    if sw == 0x9000:
        return
    if sw & 0xFFF0 == 0x63C0:
        if sw & 0x0F == 0:
            raise PinBlocked()
        raise WrongPin(sw & 0x0F)
    if sw in (0x6983, 0x6984):
        raise PinBlocked()
    raise CardRefused("verification du code PIN", sw)


def pin_block(pin: str, profile: CardProfile) -> bytes:
    """The VERIFY data; a PIN of the wrong form is refused here, before it costs a try."""
    if not pin.isascii() or not pin.isdigit() or not profile.pin_min <= len(pin) <= profile.pin_max:
        raise BadPinFormat(f"code PIN invalide : {profile.pin_min} a {profile.pin_max} chiffres / "
                           f"invalid PIN: {profile.pin_min} to {profile.pin_max} digits")
    data = pin.encode("ascii")
    if profile.pin_pad_to:
        data = data.ljust(profile.pin_pad_to, b"\xff")
    return data


def _apdu(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None) -> list[int]:
    """A short APDU (ISO/IEC 7816-4 §5.1): Lc only with data, Le 0 meaning 256."""
    out = [cla, ins, p1, p2]
    if data:
        if len(data) > 255:
            raise ValueError("short APDU data over 255 bytes")
        out += [len(data), *data]
    if le is not None:
        out.append(le & 0xFF)
    return out


def _with_le(apdu: list[int], le: int) -> list[int]:
    """The same APDU with Le set (case 1/3 gain one, case 2/4 have theirs replaced)."""
    has_le = len(apdu) == 5 or (len(apdu) > 5 and len(apdu) == 6 + apdu[4])
    return (apdu[:-1] if has_le else apdu) + [le]


class _Pcsc:
    """The few pyscard calls we use, with PC/SC return codes turned into CardError."""

    def __init__(self) -> None:
        try:
            from smartcard import scard
        except ImportError:  # the `cps` extra (pyscard) is not installed
            raise NoService("pyscard n'est pas installe (pip install 'mssante-relay[cps]') / "
                            "pyscard is not installed") from None
        self.s = scard
        hresult, self.ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            raise NoService("service carte a puce (pcscd) indisponible : demarrez pcscd / "
                            "smart card service (pcscd) not available")

    def readers(self) -> list[str]:
        s = self.s
        hresult, names = s.SCardListReaders(self.ctx, [])
        if hresult == s.SCARD_E_NO_READERS_AVAILABLE or (hresult == s.SCARD_S_SUCCESS and not names):
            raise NoReader("aucun lecteur de carte connecte / no card reader connected")
        if hresult in (s.SCARD_E_NO_SERVICE, s.SCARD_E_SERVICE_STOPPED):
            raise NoService("service carte a puce (pcscd) indisponible : demarrez pcscd / "
                            "smart card service (pcscd) not available")
        if hresult != s.SCARD_S_SUCCESS:
            raise NoReader(f"lecteurs illisibles (PC/SC 0x{hresult & 0xFFFFFFFF:08X}) / cannot list readers")
        return list(names)

    def connect(self, reader: str) -> tuple[int, int] | None:
        """(card handle, protocol), or None when that reader holds no card."""
        s = self.s
        hresult, card, proto = s.SCardConnect(self.ctx, reader, s.SCARD_SHARE_SHARED,
                                              s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1)
        if hresult == s.SCARD_S_SUCCESS:
            return card, proto
        if hresult in (s.SCARD_E_NO_SMARTCARD, s.SCARD_W_REMOVED_CARD, s.SCARD_W_UNPOWERED_CARD,
                       s.SCARD_W_UNRESPONSIVE_CARD, s.SCARD_E_READER_UNAVAILABLE):
            return None
        if hresult == s.SCARD_E_SHARING_VIOLATION:
            raise NoCard(f"carte occupee par un autre programme dans {reader} / card in use by another program")
        if hresult in (s.SCARD_E_NO_SERVICE, s.SCARD_E_SERVICE_STOPPED):
            raise NoService("service carte a puce (pcscd) indisponible : demarrez pcscd / "
                            "smart card service (pcscd) not available")
        return None

    def release(self) -> None:
        self.s.SCardReleaseContext(self.ctx)


class CpsCard:
    """A connected card; use `open_card`. Not thread-safe: one professional, one command."""

    def __init__(self, pcsc: _Pcsc, reader: str, handle: int, proto: int, profile: CardProfile):
        self._pcsc, self.reader, self._h, self._proto, self.profile = pcsc, reader, handle, proto, profile

    def _transmit(self, apdu: list[int]) -> tuple[bytes, int]:
        """Send one APDU; follows 61xx (GET RESPONSE) and 6Cxx (resend with Le) as T=0 needs
        (ISO/IEC 7816-3 §10.3.4, 7816-4 §5.3.4). Bounded: a card cannot keep us looping."""
        s = self._pcsc.s
        data = b""
        for _ in range(32):
            hresult, resp = s.SCardTransmit(self._h, self._proto, apdu)
            if hresult != s.SCARD_S_SUCCESS:
                if hresult in (s.SCARD_W_REMOVED_CARD, s.SCARD_E_NO_SMARTCARD, s.SCARD_W_RESET_CARD):
                    raise NoCard("carte retiree pendant la lecture / card removed during the operation")
                raise CardError(f"echange avec la carte impossible (PC/SC 0x{hresult & 0xFFFFFFFF:08X}) "
                                "/ card communication failed")
            if len(resp) < 2:
                raise CardError("reponse de la carte illisible / unreadable card response")
            body, sw = bytes(resp[:-2]), (resp[-2] << 8) | resp[-1]
            data += body
            if sw >> 8 == 0x61:  # more bytes waiting
                apdu = _apdu(0x00, 0xC0, 0, 0, le=sw & 0xFF)
                continue
            if sw >> 8 == 0x6C:  # wrong Le: the card says the right one
                apdu = _with_le(apdu, sw & 0xFF)
                continue
            return data, sw
        raise CardError("la carte ne termine pas sa reponse / card never completed its response")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        s = self._pcsc.s
        hresult = s.SCardBeginTransaction(self._h)
        if hresult != s.SCARD_S_SUCCESS:
            raise NoCard("carte indisponible (retiree ou occupee) / card unavailable (removed or busy)")
        try:
            yield
        finally:
            s.SCardEndTransaction(self._h, s.SCARD_LEAVE_CARD)

    def select_application(self) -> None:
        _, sw = self._transmit(_apdu(0x00, 0xA4, 0x04, 0x0C, self.profile.aid))
        if sw != 0x9000:
            raise CardRefused("selection de l'application CPS", sw)

    def read_certificate(self) -> bytes:
        """The authentication certificate, DER: SELECT the EF, then READ BINARY until its end."""
        self.select_application()
        fcp, sw = self._transmit(_apdu(0x00, 0xA4, 0x02, 0x04, self.profile.cert_file, le=0))
        if sw != 0x9000:
            raise CardRefused("lecture du certificat", sw)
        size = _fcp_size(fcp)
        out = b""
        while len(out) < min(size or MAX_CERT_BYTES, MAX_CERT_BYTES):
            want = READ_CHUNK if size is None else min(READ_CHUNK, size - len(out))
            off = len(out)
            chunk, sw = self._transmit(_apdu(0x00, 0xB0, (off >> 8) & 0x7F, off & 0xFF, le=want))
            out += chunk
            if sw in (0x6B00, 0x6282) or (sw == 0x9000 and not chunk):  # end of file reached
                break
            if sw != 0x9000:
                raise CardRefused("lecture du certificat", sw)
            known = _der_length(out)  # no size in the FCP: the DER header tells where to stop
            if size is None and known is not None and len(out) >= known:
                break
        total = _der_length(out)
        if total is None or total > len(out):
            raise CardError("certificat de la carte illisible / unreadable card certificate")
        return out[:total]

    def pin_tries_left(self) -> int | None:
        """VERIFY without data (ISO/IEC 7816-4 §11.5.6): 63Cx = x tries left, 9000 = already
        verified (None), 6983 = blocked (PinBlocked). Costs no try."""
        self.select_application()
        _, sw = self._transmit(_apdu(0x00, 0x20, 0x00, self.profile.pin_ref))
        if sw == 0x9000:
            return None
        if sw & 0xFFF0 == 0x63C0 and sw & 0x0F:
            return sw & 0x0F
        _check_pin_status(sw)
        raise CardRefused("etat du code PIN", sw)

    def verify_pin(self, pin: str) -> None:
        data = pin_block(pin, self.profile)
        self.select_application()
        _, sw = self._transmit(_apdu(0x00, 0x20, 0x00, self.profile.pin_ref, data))
        _check_pin_status(sw)

    def sign_sha256(self, message: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 / SHA-256 of `message` (RFC 8017 §8.2), computed by the card.
        The PIN must have been verified in this transaction."""
        digest = hashlib.sha256(message).digest()
        p = self.profile
        crt = bytes([0x80, 1, p.algo_ref, 0x84, 1, p.key_ref])
        if p.sign_mode == "pso":
            # MSE SET for the Digital Signature Template (B6), PSO HASH with the final hash
            # value (tag 90), PSO COMPUTE DIGITAL SIGNATURE (ISO/IEC 7816-8 §11.4, §11.8)
            self._ok(self._transmit(_apdu(0x00, 0x22, 0x41, 0xB6, crt)), "preparation de la signature")
            self._ok(self._transmit(_apdu(0x00, 0x2A, 0x90, 0xA0, bytes([0x90, len(digest)]) + digest)),
                     "empreinte a signer")
            sig, sw = self._transmit(_apdu(0x00, 0x2A, 0x9E, 0x9A, le=0))
        else:
            # MSE SET for the Authentication Template (A4), INTERNAL AUTHENTICATE with the
            # DigestInfo, which the card pads (PKCS#1 v1.5 type 1) and signs
            self._ok(self._transmit(_apdu(0x00, 0x22, 0x41, 0xA4, crt)), "preparation de la signature")
            sig, sw = self._transmit(_apdu(0x00, 0x88, 0x00, 0x00, SHA256_DIGESTINFO_PREFIX + digest, le=0))
        if sw == 0x6982:
            raise CardRefused("signature", sw)
        self._ok((sig, sw), "signature")
        if not sig:
            raise CardError("la carte n'a rendu aucune signature / the card returned no signature")
        return sig

    @staticmethod
    def _ok(result: tuple[bytes, int], what: str) -> None:
        if result[1] != 0x9000:
            raise CardRefused(what, result[1])

    def close(self) -> None:
        s = self._pcsc.s
        s.SCardDisconnect(self._h, s.SCARD_RESET_CARD)  # a reset drops the verified PIN
        self._pcsc.release()


def _fcp_size(fcp: bytes) -> int | None:
    """File size from an FCP template (62 .. 80/81 len size, ISO/IEC 7816-4 §7.4.3)."""
    if len(fcp) < 2 or fcp[0] not in (0x62, 0x6F):
        return None
    i, end = 2, min(len(fcp), 2 + fcp[1])
    while i + 2 <= end:
        tag, ln = fcp[i], fcp[i + 1]
        val = fcp[i + 2:i + 2 + ln]
        if tag in (0x80, 0x81) and val:
            return int.from_bytes(val, "big")
        i += 2 + ln
    return None


def _der_length(data: bytes) -> int | None:
    """Total length of the DER SEQUENCE at the start of `data` (X.690 §8.1.3), None if unknown."""
    if len(data) < 2 or data[0] != 0x30:
        return None
    first = data[1]
    if first < 0x80:
        return 2 + first
    n = first & 0x7F
    if n == 0 or n > 3 or len(data) < 2 + n:
        return None
    return 2 + n + int.from_bytes(data[2:2 + n], "big")


def list_readers() -> list[str]:
    pcsc = _Pcsc()
    try:
        return pcsc.readers()
    finally:
        pcsc.release()


def open_card(reader: str | None, profile: CardProfile = CardProfile()) -> CpsCard:
    """Connect to the card in `reader` (its exact name, or a part that names one reader only),
    else in the first reader holding a card."""
    pcsc = _Pcsc()
    try:
        names = pcsc.readers()
        if reader is not None:
            chosen = [n for n in names if n == reader] or [n for n in names if reader.lower() in n.lower()]
            if len(chosen) != 1:
                raise UnknownReader(f"lecteur {reader!r} {'ambigu' if chosen else 'introuvable'} "
                                    f"(lecteurs : {', '.join(names)}) / reader {reader!r} "
                                    f"{'ambiguous' if chosen else 'not found'}")
            names = chosen
        for name in names:
            got = pcsc.connect(name)
            if got is not None:
                return CpsCard(pcsc, name, got[0], got[1], profile)
        where = f"dans le lecteur {names[0]}" if reader is not None else "dans aucun lecteur"
        raise NoCard(f"pas de carte {where} : inserez votre carte CPS / no card inserted")
    except BaseException:
        pcsc.release()
        raise
