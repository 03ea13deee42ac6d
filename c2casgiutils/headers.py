"""Security and proxy middlewares (filled in by the headers issue)."""
