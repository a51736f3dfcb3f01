"""Operator tools: the `bincount` command line and the review console (no Lambda code imports this)."""
