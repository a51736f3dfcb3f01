"""Bin Count model: one network definition (network.py) and its serving path (inference.py)."""
