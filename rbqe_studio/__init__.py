"""RBQE Studio, the Qt desktop app over the :mod:`rbqe` library."""

from rbqe_studio._compat import keep_none_alive

keep_none_alive()  # before any Qt call: see rbqe_studio/_compat.py
