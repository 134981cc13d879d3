"""What a task kind needs beyond the remote code (the kinds themselves are ``models/mtbert/kinds_mtbert.py``):
the rows of token tasks."""
