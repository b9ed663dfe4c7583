"""``python -m rbqe``: the same as the ``rbqe`` command."""

import sys

from rbqe.cli import main

if __name__ == "__main__":  # not when a spawned worker re-imports this as __mp_main__
    sys.exit(main())
