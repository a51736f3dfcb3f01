"""Candidate sweeps on a lent GPU machine (see README.md beside this file)."""
