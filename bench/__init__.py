"""Benchmarks: figures go to docs/bench/*.md (summarised in docs/benchmarks.md). Run: make bench."""
