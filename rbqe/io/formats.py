"""Which formats rbqe handles: the suffixes it reads (HEIC/AVIF only when their optional
codecs are installed and registered here, on import) and the output format names."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from PIL import features

from rbqe.errors import ImageWriteError

logger = logging.getLogger("rbqe.io")  # the package's one logger (see diagnostics)

# .jfif and .jpe: JPEGs as Windows and browsers save them from the web.
_BASE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".bmp", ".tif", ".tiff",
                            ".webp", ".gif"})
_HEIF_SUFFIXES = frozenset({".heic", ".heif"})
_AVIF_SUFFIXES = frozenset({".avif"})
_HEIF_MISSING = "HEIC support is not installed (pip install 'rbqe-studio[heif]')"
_AVIF_MISSING = "AVIF support is not installed (upgrade Pillow or pip install 'rbqe-studio[heif]')"


def _pillow_has_avif() -> bool:
    # features.check() warns on names unknown to older Pillow, and the test suite turns
    # warnings into errors, so ask check_module() quietly.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(features.check_module("avif"))
    except (ValueError, ImportError):
        return False


def _register_optional_codecs() -> tuple[bool, bool]:
    """Registers HEIF/AVIF openers that are installed; returns (heif, avif) availability."""
    heif = False
    avif = _pillow_has_avif()
    try:
        import pillow_heif  # type: ignore[import-not-found]
    except ImportError:
        return heif, avif
    except Exception as exc:  # noqa: BLE001 - a broken native install must not break rbqe
        logger.warning("pillow-heif is installed but failed to import: %s", exc)
        return heif, avif
    try:
        pillow_heif.register_heif_opener()
        heif = True
    except Exception as exc:  # noqa: BLE001 - optional codec: degrade, don't fail
        logger.warning("could not enable HEIC support from pillow-heif: %s", exc)
    if not avif and hasattr(pillow_heif, "register_avif_opener"):
        try:
            pillow_heif.register_avif_opener()
            avif = True
        except Exception as exc:  # noqa: BLE001 - optional codec: degrade, don't fail
            logger.warning("could not enable AVIF support from pillow-heif: %s", exc)
    return heif, avif


HEIF_AVAILABLE, AVIF_AVAILABLE = _register_optional_codecs()

SUPPORTED_SUFFIXES: frozenset[str] = (
    _BASE_SUFFIXES
    | (_HEIF_SUFFIXES if HEIF_AVAILABLE else frozenset())
    | (_AVIF_SUFFIXES if AVIF_AVAILABLE else frozenset())
)
"""Lower-case suffixes picked up when scanning folders (HEIC/AVIF only when readable)."""


_FORMAT_ALIASES = {
    "png": "PNG",
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "jpe": "JPEG",
    "webp": "WEBP",
    "tif": "TIFF",
    "tiff": "TIFF",
    "bmp": "BMP",
}
_FORMAT_EXT = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}


def _format_name(fmt: str | None, path: Path) -> str:
    key = (fmt if fmt is not None else path.suffix).lower().lstrip(".")
    try:
        return _FORMAT_ALIASES[key]
    except KeyError:
        shown = fmt if fmt is not None else (path.suffix or "(no extension)")
        raise ImageWriteError(
            path, f"unsupported output format {shown!r} (use png, jpeg, webp, tiff or bmp)"
        ) from None


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True if the file name has a supported image suffix (case-insensitive)."""
    return Path(path).suffix.lower() in SUPPORTED_SUFFIXES
