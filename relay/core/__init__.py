"""What every front and command shares: the configuration (relay.toml), the running daemon's
state and its reload, the bounded worker pools, per-key limits, storage faults, logging."""
