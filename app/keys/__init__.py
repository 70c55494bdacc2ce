"""Virtual API keys: the service and the admin controller."""
