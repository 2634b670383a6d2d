"""Benchmarks: each `bench_*.py` exposes `run(...) -> dict`; `python -m benchmarks.run_all` runs them all."""
