"""Batches: up to 1,000 jobs submitted at once, followed, canceled and read back together."""
