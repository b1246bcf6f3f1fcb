"""TLS, trust anchors, the trust list and the development PKI (stdlib + cryptography)."""
