"""Model code; ``mtbert/`` is the remote code of the ``mtbert`` model type, copied next to every checkpoint."""
