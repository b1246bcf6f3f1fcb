"""The inbound pipeline: every message that comes in (MX, submission and the webmail's
send, the patient's filing into the dossier) parsed once, decided on off the event
loop, and everything it yields committed in one transaction (pipeline.py)."""
