"""Throughput benchmarks, run from the repository root as modules:

    python -m benchmarks.attack_throughput --help
    python -m benchmarks.train_throughput --help

`benchmarks.common` holds what both share (data fallback, timing loop, environment record,
JSON output, error exit)."""
