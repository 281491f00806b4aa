"""`python -m winn_robust ...`: the same entry point as the `winn-robust` script (and what
`torchrun ... -m winn_robust` and `reproduce`'s jobs run)."""
import sys

from winn_robust.cli import main

if __name__ == "__main__":
    sys.exit(main())
