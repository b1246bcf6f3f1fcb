"""Health professionals and the dossier: the patient's controls on the command line (cli.py),
the CPS-card client of the professional API (client.py), the notice of a dossier access (notice.py)."""
