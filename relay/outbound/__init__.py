"""Mail the relay sends for a patient or about them: a patient's own message leaving through
submission or the webmail (outgoing_mail.py), and content-free notifications (notify.py)."""
