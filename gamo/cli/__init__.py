"""The commands behind the top-level scripts (and the installed gamo-* commands)."""
