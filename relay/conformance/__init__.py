"""The conformance kit (issue 13): `mssante-relay conformance run` drives a deployment
with plain mail and checks what it answers; `mssante-relay conformance check` judges
messages a professional's software produces, with the daemon's own rules."""
