"""Reading and writing user images safely.

This module is the only place where RBQE touches image files. Its promises:

* **Inputs are never modified.** Files are only opened for reading, and
  :func:`save_image` refuses to write onto a protected (input) path.
* **Outputs are written atomically.** Data goes to a hidden ``.part`` file in the
  target folder, is flushed and fsync'ed, then renamed over the final name, so a crash
  or a full disk never leaves a half-written file under the final name. The temp file
  a kill leaves behind is removed by a later batch (:func:`remove_stale_temps`).
* **Bad input gives one clear line.** Every problem with a user's file is raised as
  :class:`~rbqe.errors.ImageReadError` / :class:`~rbqe.errors.ImageWriteError` whose
  ``str()`` is ``"<path>: <reason>"``; no other exception type escapes for a bad file.
  Truncated data is an error, never grey fill, and a size the file cannot hold is
  refused before decoding (PNG, JPEG, GIF and TIFF headers are checked).

Pixel convention: :class:`LoadedImage.pixels` is ``(H, W, C)`` float32 in ``[0, 1]``
with ``C == 1`` (grey) or ``C == 3`` (RGB). Alpha is kept apart, untouched, in its
original integer dtype so it can be re-attached bit-exactly on save.

Decisions worth knowing:

* **EXIF orientation** is applied to the pixels on load; the kept EXIF has its
  Orientation tag reset to 1, and every other tag is preserved byte-for-byte when
  possible.
* **CMYK** input is converted to RGB. With an embedded ICC profile the conversion goes
  through LittleCMS (``PIL.ImageCms``) to sRGB and the image then carries an sRGB
  profile; without one a plain (naive) conversion is used and the image carries no
  profile (viewers assume sRGB).
* **16-bit** grey images (``I;16*``) are read with Pillow and written back as 16-bit.
  Pillow cannot hold 16-bit RGB(A) or grey+alpha, so those PNG/TIFF files are decoded
  with OpenCV instead and written back at 16 bit (OpenCV for RGB/RGBA, a small built-in
  PNG encoder for grey+alpha). JPEG, WebP and BMP are 8-bit only: 16-bit data is rounded
  to 8 bit for them.
* **JPEG has no alpha**: saving an image with alpha as JPEG lays it over white (as a
  viewer shows it on a white page: dropped, the alpha showed what it hid) and logs a
  warning. WebP has no grey mode, so grey is written as RGB there; a grey ICC profile
  cannot describe RGB, so the grey goes through it to sRGB and the output carries sRGB's.
* ``keep_metadata=False`` drops EXIF (camera data, GPS...), XMP, the comment, IPTC-IIM
  and PNG text fields (names, places) but keeps the ICC profile, because the profile
  defines what the pixel values mean: dropping it would shift the colours of e.g.
  Display-P3 phone photos. The resolution (DPI) is kept for the same reason.
  ``strip_gps`` drops XMP whole if it holds GPS, and PNG text fields that name GPS.
* **IPTC-IIM** (a JPEG's APP13, a TIFF's tag 33723) goes into JPEG, TIFF and PNG
  outputs (PNG: the "Raw profile type iptc" text of ImageMagick and ExifTool), **PNG text
  fields** into PNG outputs; an output that cannot hold them logs one line
  naming it and what it lost, which a batch's report keeps (:mod:`rbqe.io.captions`).
* **Several pages or frames** (multi-page TIFF, animated GIF/WebP/PNG): only the first
  is read, and :attr:`LoadedImage.warnings` says so. Phones' MPO JPEGs are exempt.
* **A JPEG lacking only its end marker** is decoded with the marker supplied (a
  progressive one when its scan headers show that no scan is missing); one whose scan
  data is cut, or that lacks a scan, is refused like any truncated file.

Modules of this package (everything public is re-exported here, so import from
``rbqe.io``):

* :mod:`rbqe.io.read`: :func:`load_image`, :class:`LoadedImage`, sniffing, bomb limit.
* :mod:`rbqe.io.headers`: declared sizes checked against the file before decoding.
* :mod:`rbqe.io.jpeg_data`: whether a JPEG's coded data covers its whole frame.
* :mod:`rbqe.io.metadata`: EXIF orientation and carried-over EXIF, XMP, comment, DPI,
  JPEG quality.
* :mod:`rbqe.io.extended_xmp`: a JPEG's XMP over 64 KB (main and extended packets),
  merged when read, split again for a JPEG output.
* :mod:`rbqe.io.captions`: IPTC-IIM and PNG text fields, and the line that names what
  an output format cannot hold of them.
* :mod:`rbqe.io.formats`: supported suffixes, optional HEIC/AVIF codecs, output formats.
* :mod:`rbqe.io.write`: :func:`save_image`, :func:`save_like` and the encoder choice.
* :mod:`rbqe.io.pixels`: float/integer conversion and band-wise quantisation.
* :mod:`rbqe.io.png`: hand-made PNG chunks, 16-bit and streaming PNG encoders.
* :mod:`rbqe.io.atomic`: atomic writes via locked temp files; stale temp cleanup.
* :mod:`rbqe.io.identity`: :func:`path_key`, when two paths are the same file.
* :mod:`rbqe.io.naming`: :func:`output_path_for`, :func:`plan_outputs`.
* :mod:`rbqe.io.listing`: :func:`list_images`, :func:`lists_folder`.
* :mod:`rbqe.io.output_log`: :data:`OUTPUT_LOG`, :func:`record_output`,
  :func:`write_noted` (an output written with its note kept true), :func:`made_with`,
  :func:`source_identity`, :func:`source_changed`, :func:`not_this_result`.
* :mod:`rbqe.io.diagnostics`: error reasons, warnings to log records, the logger.
"""

from rbqe.io.atomic import (
    STALE_TEMP_AGE_S,
    is_temp_file,
    remove_stale_temps,
    write_bytes_atomic,
)
from rbqe.io.diagnostics import logger as logger
from rbqe.io.formats import AVIF_AVAILABLE, HEIF_AVAILABLE, SUPPORTED_SUFFIXES, is_image_file
from rbqe.io.identity import path_key
from rbqe.io.listing import list_images, lists_folder
from rbqe.io.metadata import estimate_jpeg_quality
from rbqe.io.naming import output_path_for, plan_outputs
from rbqe.io.output_log import (
    OUTPUT_LOG,
    Noted,
    OutputNotes,
    made_with,
    not_this_result,
    record_output,
    retract_output,
    source_changed,
    source_identity,
    write_noted,
)
from rbqe.io.pixels import MODES as MODES
from rbqe.io.pixels import quantize
from rbqe.io.read import DEFAULT_MAX_PIXELS, LoadedImage, load_image
from rbqe.io.write import same_file, save_image, save_like

__all__ = [
    "AVIF_AVAILABLE",
    "DEFAULT_MAX_PIXELS",
    "HEIF_AVAILABLE",
    "OUTPUT_LOG",
    "STALE_TEMP_AGE_S",
    "SUPPORTED_SUFFIXES",
    "LoadedImage",
    "Noted",
    "OutputNotes",
    "estimate_jpeg_quality",
    "is_image_file",
    "is_temp_file",
    "list_images",
    "lists_folder",
    "load_image",
    "made_with",
    "not_this_result",
    "output_path_for",
    "path_key",
    "plan_outputs",
    "quantize",
    "record_output",
    "retract_output",
    "remove_stale_temps",
    "same_file",
    "save_image",
    "save_like",
    "source_changed",
    "source_identity",
    "write_bytes_atomic",
    "write_noted",
]
