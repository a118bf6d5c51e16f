"""Central storage: SQLAlchemy tables, engine set-up and migrations."""
