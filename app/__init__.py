"""RBQE Studio, the Qt desktop app over the :mod:`rbqe` library."""

from app._compat import keep_none_alive

keep_none_alive()  # before any Qt call: see app/_compat.py
