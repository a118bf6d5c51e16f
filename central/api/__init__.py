"""HTTP API of the central service."""
