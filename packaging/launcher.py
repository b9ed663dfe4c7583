"""Frozen-app entry point for PyInstaller (the same as ``python -m app``)."""

from app.main import main

raise SystemExit(main())
