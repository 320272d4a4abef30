"""Benchmarks behind `simgan bench <name>`; each writes bench/results/<name>.json and <name>.md."""
