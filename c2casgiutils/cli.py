"""CLI helpers (filled in by the foundation issue)."""
