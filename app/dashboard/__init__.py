"""The operator's dashboard: server-rendered pages over the pool, its jobs, keys and providers."""
