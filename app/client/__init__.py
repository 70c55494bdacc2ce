"""The command line's client side: mediagate's HTTP API as a client sees it (`api.py`), and the
`generate`, `jobs` and `usage` commands built on it (`commands.py`)."""
