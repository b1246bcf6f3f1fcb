"""A virtual CPS card for the tests: a vicc speaking vsmartcard's vpcd socket protocol.

Run as a program (`python virtual_cps.py --port P --key K --cert C`); it connects to vpcd
(the PC/SC driver of vsmartcard-vpcd, loaded by pcscd) on 127.0.0.1:P and answers the APDUs
certs/cps.py sends, the way an IAS-ECC CPS3 card answers them (ISO/IEC 7816-4):

    SELECT AID (00 A4 04 0C), SELECT EF (00 A4 02 04|0C), READ BINARY (00 B0),
    VERIFY (00 20 00 ref [PIN]), MSE SET AT/DST (00 22 41 A4|B6),
    INTERNAL AUTHENTICATE (00 88 00 00 DigestInfo), PSO HASH (00 2A 90 A0),
    PSO COMPUTE DIGITAL SIGNATURE (00 2A 9E 9A).

The PIN try counter (3) lives as long as the process: a card keeps it across power cycles,
so a reset clears the verified state, never the counter. Status words: 63Cx wrong PIN with
x tries left, 6983 blocked, 6982 PIN not verified, 6985 no security environment set.

vpcd protocol (vsmartcard, vpcd/vpcd.c): every message is a 2-byte big-endian length then
the payload; a 1-byte payload from vpcd is a control (0 power off, 1 power on, 2 reset,
4 ATR request, answered with the ATR); anything else is a command APDU, answered with the
response APDU.
"""
from __future__ import annotations

import argparse
import socket
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils  # noqa: E402

from certs.cps import SHA256_DIGESTINFO_PREFIX, CardProfile  # noqa: E402

# An IAS-ECC-looking ATR (historical bytes "IAS"); pyscard and pcscd take any valid ATR.
ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")
MAX_TRIES = 3

SW_OK = b"\x90\x00"


def sw(word: int) -> bytes:
    return word.to_bytes(2, "big")


class Card:
    def __init__(self, key: rsa.RSAPrivateKey, cert_der: bytes, pin: str, profile: CardProfile):
        self.key, self.cert, self.profile = key, cert_der, profile
        self.pin = pin.encode().ljust(profile.pin_pad_to, b"\xff") if profile.pin_pad_to else pin.encode()
        self.tries = MAX_TRIES
        self.reset()

    def reset(self) -> None:
        self.app_selected = False
        self.ef: bytes | None = None
        self.verified = False
        self.se: int | None = None  # A4 or B6 after MSE SET
        self.hash: bytes | None = None

    def handle(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            return sw(0x6700)
        cla, ins, p1, p2 = apdu[:4]
        body = apdu[4:]
        data, le = b"", None
        if len(body) == 1:
            le = body[0] or 256
        elif len(body) > 1:
            lc = body[0]
            data = body[1:1 + lc]
            if len(data) != lc:
                return sw(0x6700)
            if len(body) == 2 + lc:
                le = body[-1] or 256
        if cla != 0x00:
            return sw(0x6E00)
        handler = {0xA4: self.select, 0xB0: self.read_binary, 0x20: self.verify, 0x22: self.mse,
                   0x88: self.internal_authenticate, 0x2A: self.pso}.get(ins)
        if handler is None:
            return sw(0x6D00)
        return handler(p1, p2, data, le)

    def select(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if p1 == 0x04:
            if data != self.profile.aid:
                return sw(0x6A82)
            self.app_selected, self.ef = True, None
            return SW_OK
        if p1 == 0x02:
            if not self.app_selected or data != self.profile.cert_file:
                return sw(0x6A82)
            self.ef = self.cert
            if p2 == 0x0C:
                return SW_OK
            size = len(self.cert).to_bytes(2, "big")
            fcp = bytes([0x80, 2]) + size + bytes([0x82, 1, 0x01, 0x83, 2]) + data
            return bytes([0x62, len(fcp)]) + fcp + SW_OK
        return sw(0x6A86)

    def read_binary(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if self.ef is None:
            return sw(0x6986)  # no current EF
        off = ((p1 & 0x7F) << 8) | p2
        if off >= len(self.ef):
            return sw(0x6B00)
        want = le or 256
        chunk = self.ef[off:off + want]
        return chunk + (sw(0x6282) if len(chunk) < want else SW_OK)

    def verify(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if p1 != 0x00 or p2 != self.profile.pin_ref:
            return sw(0x6A88)
        if self.tries == 0:
            return sw(0x6983)
        if not data:  # ISO/IEC 7816-4 §11.5.6: the retry counter, costs no try
            return SW_OK if self.verified else sw(0x63C0 | self.tries)
        if data == self.pin:
            self.tries, self.verified = MAX_TRIES, True
            return SW_OK
        self.tries -= 1
        self.verified = False
        return sw(0x6983) if self.tries == 0 else sw(0x63C0 | self.tries)

    def mse(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if p1 != 0x41 or p2 not in (0xA4, 0xB6):
            return sw(0x6A86)
        tlv, i = {}, 0
        while i + 2 <= len(data):
            tlv[data[i]] = data[i + 2:i + 2 + data[i + 1]]
            i += 2 + data[i + 1]
        if tlv.get(0x84) != bytes([self.profile.key_ref]):
            return sw(0x6A88)
        self.se = p2
        return SW_OK

    def internal_authenticate(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if not self.verified:
            return sw(0x6982)
        if self.se != 0xA4:
            return sw(0x6985)
        if not data.startswith(SHA256_DIGESTINFO_PREFIX) or len(data) != len(SHA256_DIGESTINFO_PREFIX) + 32:
            return sw(0x6A80)
        return self._sign(data[len(SHA256_DIGESTINFO_PREFIX):]) + SW_OK

    def pso(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if (p1, p2) == (0x90, 0xA0):
            if len(data) != 34 or data[:2] != b"\x90\x20":
                return sw(0x6A80)
            self.hash = data[2:]
            return SW_OK
        if (p1, p2) == (0x9E, 0x9A):
            if not self.verified:
                return sw(0x6982)
            if self.se != 0xB6 or self.hash is None:
                return sw(0x6985)
            sig, self.hash = self._sign(self.hash), None
            return sig + SW_OK
        return sw(0x6A86)

    def _sign(self, digest: bytes) -> bytes:
        return self.key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


def _recv(conn: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        got = conn.recv(n - len(out))
        if not got:
            raise ConnectionError("vpcd closed the connection")
        out += got
    return out


def serve(card: Card, port: int, connect_timeout: float = 30.0) -> None:
    deadline = time.monotonic() + connect_timeout
    while True:
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    conn.settimeout(None)
    with conn:
        while True:
            (n,) = struct.unpack(">H", _recv(conn, 2))
            msg = _recv(conn, n)
            if n == 1:
                if msg[0] == 4:
                    conn.sendall(struct.pack(">H", len(ATR)) + ATR)
                elif msg[0] in (0, 1, 2):
                    card.reset()
                continue
            resp = card.handle(msg)
            conn.sendall(struct.pack(">H", len(resp)) + resp)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", type=Path, required=True)
    ap.add_argument("--cert", type=Path, required=True)
    ap.add_argument("--pin", default="1234")
    args = ap.parse_args()
    key = serialization.load_pem_private_key(args.key.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(args.cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    card = Card(key, cert, args.pin, CardProfile())
    try:
        serve(card, args.port)
    except (ConnectionError, KeyboardInterrupt):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
