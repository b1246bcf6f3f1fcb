"""The patient's medical dossier: attachments saved as documents, IHE XDM packages.
Nothing here yet: issue 5 builds it (DESIGN.md §3 and §4 "Dossier")."""
