"""Application settings: a plain dataclass, plus its QSettings round trip.

The dataclass is Qt-free so that it can be built and checked in tests without a GUI.
Only :func:`load_settings` / :func:`save_settings` touch ``QSettings``; the caller owns
the ``QSettings`` object, so tests hand in one backed by a temporary ini file and never
see the user's real settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only the functions below touch Qt: the dataclass loads none
    from PySide6.QtCore import QByteArray, QSettings

from rbqe.exit_policy import EXIT_MODES as ALL_EXIT_MODES
from rbqe.exit_policy import ExitMode, parse_exit_mode

ORGANIZATION = "RBQE"
APPLICATION = "RBQE Studio"

EXIT_MODES = tuple(m for m in ALL_EXIT_MODES if m != "all")  # a setting forces no "all"
BACKENDS = ("auto", "torch", "openvino")  # rbqe.backends.BACKENDS, without importing torch
OUTPUT_FORMATS = ("png", "jpeg", "webp")


@dataclass
class AppSettings:
    """Everything the user can choose that outlives a session.

    Attributes:
        device: ``auto``, ``cpu`` or ``cuda:N``.
        backend: ``auto``, ``torch`` or ``openvino`` (see :mod:`rbqe.backends`).
        weights_file: A weights file the user chose in the app ("" for the shipped model);
            ``--weights`` and ``RBQE_WEIGHTS`` win over it.
        exit_mode: ``auto`` or a forced exit ``"1"``..``"5"``.
        threshold: Quality threshold; None means "the weights' own threshold".
        output_format: ``png``, ``jpeg`` or ``webp``.
        quality: JPEG/WebP quality 1..100.
        suffix: Appended to the file stem of every output (may be empty).
        output_dir: Folder for batch output and the default folder of save dialogs.
        keep_metadata: Write EXIF (ICC is always kept) into outputs.
        strip_gps: Leave the GPS location out of that EXIF (``rbqe enhance --strip-gps``).
        batch_input: Last batch input folder.
        batch_recursive: Scan sub-folders in a batch.
        last_open_dir: Where the open dialogs start.
    """

    device: str = "auto"
    backend: str = "auto"
    weights_file: str = ""
    exit_mode: str = "auto"
    threshold: float | None = None
    output_format: str = "png"
    quality: int = 95
    suffix: str = "_rbqe"
    output_dir: str = ""
    keep_metadata: bool = True
    strip_gps: bool = False
    batch_input: str = ""
    batch_recursive: bool = False
    last_open_dir: str = ""

    def __post_init__(self) -> None:
        self.normalise()

    def normalise(self) -> None:
        """Bring out-of-range values (from an old or hand-edited ini) back into range."""
        if self.backend not in BACKENDS:
            self.backend = "auto"
        if self.exit_mode not in EXIT_MODES:
            self.exit_mode = "auto"
        if self.output_format not in OUTPUT_FORMATS:
            self.output_format = "png"
        self.quality = max(1, min(100, int(self.quality)))
        if self.threshold is not None and not 0.0 <= float(self.threshold) <= 1.0:
            self.threshold = None
        if any(sep in self.suffix for sep in ("/", "\\")):
            self.suffix = self.suffix.replace("/", "").replace("\\", "")

    @property
    def mode(self) -> ExitMode:
        """The exit mode as :meth:`rbqe.engine.Enhancer.enhance` takes it."""
        return parse_exit_mode(self.exit_mode)


def _coerce(value: object, default: object) -> object:
    """QSettings ini values come back as strings; turn them into the field's type."""
    if value is None:
        return default
    if isinstance(default, bool):
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    if isinstance(default, int):
        try:
            return int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return default
    if isinstance(default, str):
        return str(value)
    return value


def load_settings(store: QSettings) -> AppSettings:
    """Read settings from ``store``; missing or broken values fall back to defaults."""
    defaults = AppSettings()
    values = {}
    for f in fields(AppSettings):
        raw = store.value(f"settings/{f.name}")
        if f.name == "threshold":
            try:
                values[f.name] = float(raw) if raw not in (None, "", "none") else None
            except (TypeError, ValueError):
                values[f.name] = None
        else:
            values[f.name] = _coerce(raw, getattr(defaults, f.name))
    return AppSettings(**values)


def save_settings(store: QSettings, settings: AppSettings) -> None:
    for name, value in asdict(settings).items():
        store.setValue(f"settings/{name}", "none" if value is None else value)


def load_state(store: QSettings, key: str) -> QByteArray | None:
    """A saved geometry/splitter blob, or None."""
    from PySide6.QtCore import QByteArray

    value = store.value(f"window/{key}")
    return value if isinstance(value, QByteArray) and not value.isEmpty() else None


def save_state(store: QSettings, key: str, blob: QByteArray) -> None:
    store.setValue(f"window/{key}", blob)
