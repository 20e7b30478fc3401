"""pytest hooks (placeholder while the session object is written)."""
