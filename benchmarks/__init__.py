"""Throughput benchmarks, run from the repository root as modules:

    python -m benchmarks.attack_throughput --help
    python -m benchmarks.train_throughput --help     # --floor / --compile-check: benchmarks.train_floor
    python -m benchmarks.defence_floor --help
    python -m benchmarks.scaling --help

`benchmarks.common` holds what they share: the `Pipeline` (a name and a callable doing its
group's work) and the round-robin runner `time_pipelines` (warm-up, interleaved repeats, best
and median, ratio columns), the bare projected ascent of the floors, `Column` tables, the
machine line, the environment record and --json output, the data fallback and the error exit.
(integrity_probes.py is not a throughput benchmark: a script of fault probes against a code tree.)"""
