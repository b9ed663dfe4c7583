"""matplotlib for the ``--plot`` options, drawn off-screen; an optional dependency."""

from __future__ import annotations

from typing import Any

from rbqe.errors import UsageError


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed), or one usage error
    naming the extra that installs it."""
    try:
        import matplotlib
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install matplotlib (or the "
                         "package's [train] extra)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
