"""The daemon as a service: wiring the fronts together (serve.py), systemd notify, the admin
port (/metrics, /healthz), TLS handshake events, one daemon per SQLite store."""
