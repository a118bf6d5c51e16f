"""Route modules of the central API."""
