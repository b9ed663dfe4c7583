"""RBQE: resource-efficient blind quality enhancement of compressed images (no Qt here)."""

__version__ = "0.1.0"
