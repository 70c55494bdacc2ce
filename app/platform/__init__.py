"""Plumbing every domain stands on: settings, database, tables, ids, errors, logging, the Redis
mechanisms (events, limits) and the resources built from the settings.
"""
