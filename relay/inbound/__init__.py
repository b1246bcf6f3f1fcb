"""The inbound pipeline: a received message parsed once, decided on off the event
loop, and everything it yields committed in one transaction (pipeline.py)."""
