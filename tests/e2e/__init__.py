"""End-to-end tests: the real `python -m bot` process, talking HTTP to a fake Bot API server."""
