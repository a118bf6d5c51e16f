"""Keyword-only data access for the central store."""
