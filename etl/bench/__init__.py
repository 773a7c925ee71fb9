"""Benchmarks: labelled dedup evaluation helpers, the scale generator and the `bench` command."""
