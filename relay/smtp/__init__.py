"""SMTP fronts: the MX (mx.py); submission comes later."""
