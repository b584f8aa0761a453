"""Throughput and scaling benchmarks (not timed tests)."""
