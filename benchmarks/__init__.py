"""Benchmark scripts, run as modules from the repository root: ``python -m benchmarks.speed``,
``python -m benchmarks.precision`` ... (what they share is in :mod:`benchmarks.common`)."""
