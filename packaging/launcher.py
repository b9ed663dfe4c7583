"""Frozen-app entry point for PyInstaller (the same as ``python -m app``)."""

from app.launch import main

raise SystemExit(main())
