"""Errors and exit codes, atomic writes and digests, the local stack's state file, malloc settings: for every package."""
