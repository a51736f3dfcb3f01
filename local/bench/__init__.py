"""Benchmarks of the serving handlers, the local pipeline and the real-time endpoint, and their meters."""
