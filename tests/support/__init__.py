"""Test helpers shared across test packages: real keyring, PostgreSQL server, central processes."""
