"""`python -m winn_robust ...`: the same entry point as the `winn-robust` script: what `reproduce`'s jobs run
and the module torchrun starts on every rank (`torchrun --nproc-per-node N -m winn_robust train ...`)."""
import sys

from winn_robust.cli import main

if __name__ == "__main__":
    sys.exit(main())
