"""Outbound queue runner, SMTP client and delivery reports."""
