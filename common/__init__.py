"""What every package stands on: errors and exit codes, atomic writes and digests, the local
stack's state file, the malloc settings."""
