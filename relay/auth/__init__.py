"""Patient authentication: the credential check and its throttling (login.py), with the
failure counts shared by the nodes of one PostgreSQL (shared_throttle.py)."""
