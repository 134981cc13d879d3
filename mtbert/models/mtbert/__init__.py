"""The remote code: flat files that import only each other (``from .x import``), so a saved folder loads with
``trust_remote_code=True`` where mtbert is not installed."""
