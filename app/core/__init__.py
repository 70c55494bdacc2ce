"""Shared core: settings, database, tables, the job contract, events and domain services."""
