"""Generation jobs: intake, the queue, every state change, the outbox, idempotency, and their HTTP
controllers (/v1/jobs and its event stream).
"""
