"""Webhooks: signing, scheduling and delivering job notifications, and their HTTP endpoints."""
