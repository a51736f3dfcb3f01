"""Errors and exit codes, atomic writes and digests, the local stack's state file: for every package."""
