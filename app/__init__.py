"""mediagate: a queue-driven backend for media generation."""
