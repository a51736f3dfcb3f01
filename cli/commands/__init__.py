"""One module per ``bincount`` subcommand: its options (``register(subparsers)``, see cli/main.py),
its work and ``run``; what several subcommands share lives in cli/ (tests/common checks that no
subcommand imports another)."""
