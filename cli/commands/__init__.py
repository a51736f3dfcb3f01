"""One module per ``bincount`` subcommand, each with ``register(subparsers)`` (see cli/main.py)."""
