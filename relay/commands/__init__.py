"""Use cases behind command-line commands that need no running daemon."""
