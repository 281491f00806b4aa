"""`python -m winn_robust ...`: the same entry point as the `winn-robust` script: what `reproduce`'s jobs run
and the module torchrun starts on every rank (`torchrun --nproc-per-node N -m winn_robust train ...`).

The stop signals are routed to stop_request before torch is imported (seconds on a busy node): a
scheduler's SIGTERM or SIGUSR2 during start-up is then recorded, not fatal, and honoured at the
first safe point."""
import sys

from winn_robust import stop_request

if __name__ == "__main__":
    with stop_request.starting():
        from winn_robust.cli import main
    sys.exit(main())
