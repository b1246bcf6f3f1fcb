"""The daemon and its protocol fronts (the top of DESIGN.md §3's dependency table)."""
