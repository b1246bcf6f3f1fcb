"""The mailbox store: SQLAlchemy 2 async models and the only API protocol code uses."""
