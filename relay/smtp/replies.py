"""Enhanced status codes on every reply (RFC 2034 §3: once ENHANCEDSTATUSCODES is
advertised, every reply after the greeting and EHLO carries one), including the
stock replies of aiosmtpd's protocol engine, which have none."""
from __future__ import annotations

import re

from policy.decisions import MESSAGE_TOO_BIG

_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")
_NO_ENHANCED = {"220", "334", "354"}  # greeting/STARTTLS go-ahead, SASL and DATA go-ahead
# RFC 3463 codes for aiosmtpd's stock replies, by reply code.
_BY_CODE = {
    "221": "2.0.0", "250": "2.0.0", "252": "2.5.0", "421": "4.4.2", "451": "4.3.0", "452": "4.5.3",
    "454": "4.7.0", "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1",
    "504": "5.5.4", "530": "5.7.0", "538": "5.7.11", "550": "5.0.0", "553": "5.1.3",
    "554": "5.0.0", "555": "5.5.4",
}


def with_enhanced_code(reply: str) -> str:
    code, sep = reply[:3], reply[3:4]
    if sep != " " or code in _NO_ENHANCED or _HAS_ENHANCED.match(reply):
        return reply
    if code == "552":  # SIZE parameter or DATA over the limit (RFC 1870 §6.1)
        return MESSAGE_TOO_BIG.smtp()
    enhanced = _BY_CODE.get(code, f"{code[0]}.0.0")
    return f"{code} {enhanced} {reply[4:]}"
