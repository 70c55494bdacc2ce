"""Operating the pool: its state (queue depth and age, live workers, stored bytes), the
Prometheus endpoint and the admin's view of the workers."""
