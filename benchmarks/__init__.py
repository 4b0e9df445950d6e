"""Benchmark scripts, run as files: ``python benchmarks/speed.py``, ``benchmarks/precision.py`` ..."""
