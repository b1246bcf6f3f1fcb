"""The IMAP4rev1/IMAP4rev2 server for patients (RFC 3501, RFC 9051)."""
