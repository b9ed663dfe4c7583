"""Defects a fuzz run found (issue 13, items 8-14), each pinned by a regression test."""

from __future__ import annotations

import errno
import io
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from clirun import run_cli
from corpus import pattern
from PIL import Image

from rbqe.batch import BatchEvents, BatchOptions, run_batch
from rbqe.engine import Enhancer
from rbqe.errors import ImageReadError, ImageWriteError
from rbqe.io import list_images, load_image, plan_outputs

ROOT = Path(__file__).resolve().parent.parent


def photo(height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """A small RGB test picture (uint8)."""
    return pattern(height, width, 3, seed=seed)


def save(path: Path, height: int = 24, width: int = 32, seed: int = 0, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo(height, width, seed=seed)).save(path, **kw)
    return path


# -- 8: names that differ only in case ------------------------------------------------


def test_names_differing_in_case_are_three_files(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    names = ["photo.jpg", "Photo.jpg", "PHOTO.jpg"]
    for seed, name in enumerate(names):
        save(folder / name, seed=seed)
    if len(list(folder.iterdir())) < 3:
        pytest.skip("case-insensitive file system")
    found = list_images([folder])
    assert sorted(f.name for f, _ in found) == sorted(names)
    plan = plan_outputs(found, tmp_path / "out")
    outs = [p[None].name for p in plan.values()]
    # Collision-free even where the output folder ignores case.
    assert len({n.casefold() for n in outs}) == 3


def test_same_file_twice_is_listed_once(tmp_path: Path) -> None:
    a = save(tmp_path / "in" / "a.png")
    (tmp_path / "link.png").symlink_to(a)
    found = list_images([a, tmp_path / "in", tmp_path / "link.png"])
    assert [f for f, _ in found] == [a]


def test_inputs_keep_the_order_given(tmp_path: Path) -> None:
    b, a = save(tmp_path / "b.png"), save(tmp_path / "a.png")
    folder = tmp_path / "f"
    z, y = save(folder / "z.png"), save(folder / "y.png")
    assert [f for f, _ in list_images([b, folder, a])] == [b, y, z, a]


# -- 9, 10: headers that declare more than the file holds -----------------------------


def _png16(height: int = 32, width: int = 40) -> bytes:
    import cv2

    rgb = photo(height, width).astype(np.uint16) * 257
    ok, data = cv2.imencode(".png", rgb[..., ::-1])
    assert ok
    return data.tobytes()


def _with_ihdr(png: bytes, width: int, height: int) -> bytes:
    b = bytearray(png)
    struct.pack_into(">II", b, 16, width, height)
    struct.pack_into(">I", b, 29, zlib.crc32(bytes(b[12:29])) & 0xFFFFFFFF)
    return bytes(b)


def _jpeg_sized(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo(24, 32)).save(buf, "JPEG", quality=80)
    b = bytearray(buf.getvalue())
    sof = b.index(b"\xff\xc0")
    struct.pack_into(">HH", b, sof + 5, height, width)
    return bytes(b)


def _peak_rss_mb(path: Path) -> tuple[float, str]:
    """Loads ``path`` in a fresh process; returns its peak RSS (MB) and the error line."""
    code = (
        "import resource, sys\n"
        "from rbqe.io import load_image\n"
        "from rbqe.errors import ImageReadError\n"
        "try:\n    load_image(sys.argv[1]); msg = 'ok'\n"
        "except ImageReadError as e:\n    msg = str(e)\n"
        "print(_hwm_kb() / 1024)\nprint(msg)\n"
    )
    # VmHWM belongs to the new address space; ru_maxrss would carry over the forking
    # pytest process's own peak (Linux keeps it across fork and execve).
    code = ("def _hwm_kb():\n"
            "    for line in open('/proc/self/status'):\n"
            "        if line.startswith('VmHWM:'):\n"
            "            return float(line.split()[1])\n"
            "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n") + code
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    rss, msg = out.stdout.splitlines()
    return float(rss), msg


def test_png16_chunk_length_flip_is_refused_without_allocating(tmp_path: Path) -> None:
    png = bytearray(_png16())
    struct.pack_into(">I", png, 33, 0xFFFFFFF0)  # the chunk length right after IHDR
    bad = tmp_path / "flip16.png"
    bad.write_bytes(png)
    rss, msg = _peak_rss_mb(bad)
    assert msg == f"{bad}: truncated or corrupt image data"
    assert rss < 1024


def test_jpeg_claiming_14000_square_is_refused_before_decoding(tmp_path: Path) -> None:
    bad = tmp_path / "liar.jpg"
    bad.write_bytes(_jpeg_sized(14000, 14000))
    rss, msg = _peak_rss_mb(bad)
    assert msg.startswith(f"{bad}: truncated or corrupt image data (header declares "
                          "14000 x 14000")
    assert rss < 1024


def test_png_taller_than_its_data_is_an_error(tmp_path: Path) -> None:
    good = io.BytesIO()
    Image.fromarray(photo(24, 32)).save(good, "PNG")
    for name, blob in [("taller.png", _with_ihdr(good.getvalue(), 32, 48)),
                       ("taller16.png", _with_ihdr(_png16(32, 40), 40, 64))]:
        bad = tmp_path / name
        bad.write_bytes(blob)
        with pytest.raises(ImageReadError) as info:
            load_image(bad)
        assert "pixel data ends before the declared" in info.value.reason


def _adam7_png(rgb: np.ndarray) -> bytes:
    """An interlaced 8-bit RGB PNG (Pillow and OpenCV write none), filter 0 on every row."""
    h, w, _ = rgb.shape
    raw = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
                           (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):
        sub = rgb[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\x00" + row.tobytes() for row in sub)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def test_interlaced_and_well_compressed_pngs_still_load(tmp_path: Path) -> None:
    flat = tmp_path / "flat.png"
    Image.new("RGB", (3000, 2000), (120, 80, 40)).save(flat, optimize=True)  # ~1000:1
    assert load_image(flat).size == (3000, 2000)
    rgb = photo(37, 53)
    laced = tmp_path / "laced.png"
    laced.write_bytes(_adam7_png(rgb))
    with Image.open(laced) as im:
        assert im.info.get("interlace") == 1
    back = load_image(laced)
    assert np.array_equal((back.pixels * 255).round().astype(np.uint8), rgb)
    laced.write_bytes(_adam7_png(rgb)[:-40] + _adam7_png(rgb)[-12:])  # IDAT cut short
    with pytest.raises(ImageReadError):
        load_image(laced)


# -- 13: an output folder that cannot be written --------------------------------------


@pytest.fixture
def three(tmp_path: Path) -> Path:
    for k in range(3):
        save(tmp_path / "in" / f"p{k}.jpg", seed=k, quality=30)
    return tmp_path / "in"


@pytest.fixture
def locked_folder(tmp_path: Path):
    """A folder nobody can create files in: immutable for root (chattr +i), 0555 otherwise."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() == 0:
        if not shutil.which("chattr") or subprocess.run(
                ["chattr", "+i", str(folder)], capture_output=True).returncode:
            pytest.skip("root and no chattr +i here: cannot make an unwritable folder")
        yield folder
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


def test_unwritable_output_folder_stops_before_any_work(weights, three, locked_folder,
                                                         monkeypatch) -> None:
    calls = []
    real = Enhancer.enhance
    monkeypatch.setattr(Enhancer, "enhance", lambda self, *a, **k: (calls.append(1),
                                                                     real(self, *a, **k))[1])
    rc, err = run_cli(["enhance", str(three), "-o", str(locked_folder),
                       "--weights", str(weights), "--device", "cpu"])
    assert rc == 2 and calls == []
    assert err.splitlines() == [
        f"rbqe: error: {locked_folder}: cannot write to the output folder: permission denied"]


def test_full_disk_stops_the_batch_after_the_first_write(weights, three, tmp_path,
                                                         monkeypatch) -> None:
    # A full disk cannot be made in a test; the write fails as atomic_write's does then.
    def disk_full(target, *a, **k):
        error = ImageWriteError(target, "disk full")
        error.errno = errno.ENOSPC
        raise error

    monkeypatch.setattr("rbqe.batch.save_like", disk_full)
    done = []
    enhancer = Enhancer(weights, device="cpu")
    summary = run_batch(enhancer, [three], BatchOptions(out_dir=tmp_path / "out"),
                        events=BatchEvents(on_item_done=lambda i, item: done.append(item)))
    assert len(summary.items) == 1 and len(done) == 1  # not three images of work
    assert summary.items[0].status == "failed"
    assert summary.stopped == (f"{tmp_path / 'out'}: cannot write to the output folder "
                               "(disk full); batch stopped")


# -- 12: two processes on the same folders --------------------------------------------


def test_two_processes_never_make_the_same_output(weights, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    n = 8
    for k in range(n):
        save(src / f"p{k}.jpg", 160, 160, seed=k, quality=30)
    cmd = [sys.executable, "-m", "rbqe.cli", "enhance", str(src), "-o", str(out),
           "--weights", str(weights), "--device", "cpu", "--exit", "all"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    counts = []
    for err in errs:
        last = err.strip().splitlines()[-1]  # "rbqe: N enhanced, M skipped, 0 failed of 8"
        words = last.split()
        counts.append((int(words[1]), int(words[3])))
    # Every image was enhanced by exactly one of them; the other skipped it.
    assert sum(done for done, _ in counts) == n, errs
    assert sum(skipped for _, skipped in counts) == n, errs
    assert len(list(out.glob("*.png"))) == 5 * n
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# -- 8 (batch) and 11: what a user sees ------------------------------------------------


def test_case_differing_names_give_three_outputs(weights, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    for seed, name in enumerate(["photo.jpg", "Photo.jpg", "PHOTO.jpg"]):
        save(folder / name, seed=seed, quality=30)
    if len(list(folder.iterdir())) < 3:
        pytest.skip("case-insensitive file system")
    summary = run_batch(Enhancer(weights, device="cpu"), [folder],
                        BatchOptions(out_dir=tmp_path / "out"))
    assert [i.status for i in summary.items] == ["ok"] * 3
    outs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(outs) == 3 and len({n.casefold() for n in outs}) == 3


def _corrupt_files(folder: Path) -> list[Path]:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rgb16 = photo(64, 64).astype(np.uint16) * 257
    png = bytearray(cv2.imencode(".png", rgb16)[1].tobytes())
    png[png.index(b"IDAT") + 40] ^= 0xFF  # libpng: "IDAT: CRC error"
    tif = io.BytesIO()
    noise = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(noise).save(tif, "TIFF", compression="tiff_lzw")
    t = bytearray(tif.getvalue())
    for k in range(100, 600, 7):  # libtiff: "LZWDecode: Corrupted LZW table at scanline 0"
        t[k] ^= 0xFF
    (folder / "crc16.png").write_bytes(png)
    (folder / "bad.tif").write_bytes(t)
    return [folder / "crc16.png", folder / "bad.tif"]


def test_native_decoder_messages_do_not_reach_stderr(weights, tmp_path: Path) -> None:
    files = _corrupt_files(tmp_path / "in")
    out = subprocess.run([sys.executable, "-m", "rbqe.cli", "enhance", *map(str, files),
                          "-o", str(tmp_path / "out"), "--weights", str(weights)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"rbqe: error: {files[0]}: truncated or corrupt image data",
        f"rbqe: error: {files[1]}: truncated or corrupt image data",
        "rbqe: 0 enhanced, 0 skipped, 2 failed of 2",
    ]
    # -v keeps them, in the log, with the file's name.
    verbose = subprocess.run([sys.executable, "-m", "rbqe.cli", "-v", "enhance", str(files[0]),
                              "-o", str(tmp_path / "out"), "--weights", str(weights)],
                             capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert f"INFO: {files[0]}: the decoder said: libpng error: " in verbose.stderr


# -- 15: --strip-gps drops the location only ---------------------------------------------


def _exif_with_gps() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "RBQE Camera"  # Make
    exif[0x0132] = "2026:01:02 03:04:05"  # DateTime
    exif.get_ifd(0x8769)[0x829A] = (1, 250)  # ExposureTime, in the camera (Exif) directory
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    return exif.tobytes()


def test_strip_gps_keeps_camera_and_drops_location(weights, tmp_path: Path) -> None:
    src = tmp_path / "gps.jpg"
    Image.fromarray(photo(32, 32)).save(src, quality=40, exif=_exif_with_gps())
    with Image.open(src) as im:
        exposure = im.getexif().get_ifd(0x8769)[0x829A]
    for flags, has_gps in (([], True), (["--strip-gps"], False)):
        out = tmp_path / f"out{len(flags)}"
        rc, err = run_cli(["enhance", str(src), "-o", str(out), "--weights", str(weights),
                           *flags])
        assert rc == 0, err
        with Image.open(out / "gps.png") as im:
            exif = im.getexif()
            assert exif[0x010F] == "RBQE Camera"
            assert exif.get_ifd(0x8769)[0x829A] == exposure
            assert bool(exif.get_ifd(0x8825)) is has_gps
