"""The HTTP API (Litestar): thin handlers over app.core services."""
