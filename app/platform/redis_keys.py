"""Every Redis key and channel mediagate owns, in one place (arq's own keys are arq's). Each
starts with the deployment's namespace (`MEDIAGATE_REDIS_NAMESPACE`), so deployments can share a
Redis and a test run never sees another's."""

from __future__ import annotations


def purge_job_id(key_id: str) -> str:
    """One purge per key at a time: arq does not enqueue a job id that is queued or running."""
    return f"purge-{key_id}"


def queue_name(namespace: str) -> str:
    return f"{namespace}:queue"


def connection_name(namespace: str, role: str) -> str:
    """The name of a process's Redis connections in `CLIENT LIST` (`api`, `worker` or `cli`)."""
    return f"{namespace}:{role}"


def events_stream_key(namespace: str, stream_id: str) -> str:
    """A job's (or a batch's) event stream."""
    return f"{namespace}:events:{stream_id}"


def events_meta_key(namespace: str, stream_id: str) -> str:
    return f"{namespace}:events-meta:{stream_id}"


def events_channel(namespace: str) -> str:
    return f"{namespace}:events"


def keys_channel(namespace: str) -> str:
    """Where a change to a virtual key (revoked, deleted, limits changed) is announced, so that
    every API process drops its cached copy."""
    return f"{namespace}:keys"


def rate_limit_key(namespace: str, key_id: str) -> str:
    """A key's requests of the last minute (a sorted set: the sliding window)."""
    return f"{namespace}:rpm:{key_id}"


def provider_slots_key(namespace: str, provider: str) -> str:
    """The holders of a provider's pool-wide concurrency slots (a sorted set by expiry)."""
    return f"{namespace}:provider-slots:{provider}"


def auth_failures_key(namespace: str, address: str, minute: int) -> str:
    """Failed authentications from one client address in one minute (a counter)."""
    return f"{namespace}:auth-failures:{address}:{minute}"


def dashboard_session_key(namespace: str, session_id: str) -> str:
    """A dashboard session that has not ended (it exists until sign-out or its lifetime)."""
    return f"{namespace}:dashboard-session:{session_id}"


def workers_key(namespace: str) -> str:
    """The workers that ever beat lately: a sorted set of worker ids by their last heartbeat."""
    return f"{namespace}:workers"


def worker_key(namespace: str, worker_id: str) -> str:
    """One worker's heartbeat (a hash that expires unless renewed)."""
    return f"{namespace}:worker:{worker_id}"
