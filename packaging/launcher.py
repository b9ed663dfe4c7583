"""Frozen-app entry point for PyInstaller (the same as ``python -m rbqe_studio``)."""

from rbqe_studio.launch import main

raise SystemExit(main())
