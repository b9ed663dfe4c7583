"""Defects a fuzz run found (issue 13, items 8-14), each pinned by a regression test."""

from __future__ import annotations

import errno
import io
import json
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
from PIL import Image, UnidentifiedImageError

from rbqe.batch import BatchEvents, BatchOptions, run_batch
from rbqe.engine import Enhancer
from rbqe.errors import ImageReadError, ImageWriteError
from rbqe.io import OUTPUT_LOG, list_images, load_image, plan_outputs
from tests.helpers import little_tiff

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


def _jpeg_sized(width: int, height: int, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo(24, 32)).save(buf, "JPEG", quality=80, **kw)
    b = bytearray(buf.getvalue())
    sof = b.index(b"\xff\xc2" if kw.get("progressive") else b"\xff\xc0")
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


def test_jpeg_frame_larger_than_its_data_is_an_error(tmp_path: Path) -> None:
    # libjpeg fills what the data does not reach with grey and only warns; these decoded
    # as the real rows plus grey fill and were reported ok.
    for name, w, h, kw in [("taller.jpg", 32, 48, {}), ("wider.jpg", 64, 24, {}),
                           ("taller_prog.jpg", 32, 40, {"progressive": True})]:
        bad = tmp_path / name
        bad.write_bytes(_jpeg_sized(w, h, **kw))
        with pytest.raises(ImageReadError) as info:
            load_image(bad)
        assert str(info.value) == (f"{bad}: truncated or corrupt image data (pixel data "
                                   f"ends before the declared {w} x {h})")
    same = tmp_path / "same.jpg"
    same.write_bytes(_jpeg_sized(32, 24))  # the frame it really has: fine
    assert load_image(same).size == (32, 24)


def _cut(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


def _encoded(fmt: str, rgb: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **kw)
    return buf.getvalue()


def test_truncated_files_are_one_error_naming_the_file(tmp_path: Path) -> None:
    noise = (np.random.default_rng(1).random((96, 128, 3)) * 255).astype(np.uint8)
    jpeg = _encoded("JPEG", noise, quality=90)
    cases = {
        "cut.jpg": _cut(jpeg),
        "cut_prog.jpg": _cut(_encoded("JPEG", noise, quality=90, progressive=True)),
        # Cut inside the scan but given back its end marker: libjpeg's "premature end".
        "cut_eoi.jpg": _cut(jpeg) + b"\xff\xd9",
        "cut.png": _cut(_encoded("PNG", noise)),
        "cut.tif": _cut(_encoded("TIFF", noise, compression="tiff_lzw")),
        "cut.gif": _cut(_encoded("GIF", noise)),
        "cut.webp": _cut(_encoded("WEBP", noise, quality=80)),
        "cut.bmp": _cut(_encoded("BMP", noise)),
    }
    for name, blob in cases.items():
        bad = tmp_path / name
        bad.write_bytes(blob)
        with pytest.raises(ImageReadError) as info:
            load_image(bad)
        assert str(info.value).startswith(f"{bad}: truncated or corrupt image data"), name


def _set_tiff_height(tif: bytes, height: int) -> bytes:
    b = bytearray(tif)
    ifd = struct.unpack_from("<I", b, 4)[0]
    for k in range(struct.unpack_from("<H", b, ifd)[0]):
        entry = ifd + 2 + 12 * k
        tag, kind = struct.unpack_from("<HH", b, entry)
        if tag == 257:  # ImageLength
            struct.pack_into("<H" if kind == 3 else "<I", b, entry + 8, height)
    return bytes(b)


def _tiled_tiff(rgb: np.ndarray, tile: int = 16, height: int | None = None) -> bytes:
    """An uncompressed RGB TIFF in tiles (Pillow writes strips only); ``height`` is the
    height to declare."""
    h, w, _ = rgb.shape
    padded = np.zeros((-(-h // tile) * tile, -(-w // tile) * tile, 3), np.uint8)
    padded[:h, :w] = rgb
    data = b"".join(padded[y:y + tile, x:x + tile].tobytes()
                    for y in range(0, h, tile) for x in range(0, w, tile))
    n, size = len(data) // (tile * tile * 3), tile * tile * 3
    return little_tiff([(256, 3, [w]), (257, 3, [height or h]), (258, 3, [8, 8, 8]),
                        (259, 3, [1]), (262, 3, [2]), (277, 3, [3]), (284, 3, [1]),
                        (322, 3, [tile]), (323, 3, [tile]),
                        (324, 4, [k * size for k in range(n)]), (325, 4, [size] * n)],
                       data, 324)


def _gif_descriptor(gif: bytes) -> int:
    """Offset of the first image descriptor (after the colour table and extensions)."""
    flags = gif[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while gif[pos] == 0x21:
        pos += 2
        while gif[pos]:
            pos += 1 + gif[pos]
        pos += 1
    assert gif[pos] == 0x2C
    return pos


def test_tiff_taller_than_its_strips_or_tiles_is_an_error(tmp_path: Path) -> None:
    rgb = photo(37, 53)
    tiled = tmp_path / "tiled.tif"
    tiled.write_bytes(_tiled_tiff(rgb))
    back = load_image(tiled)
    assert np.array_equal((back.pixels * 255).round().astype(np.uint8), rgb)
    strips = io.BytesIO()
    Image.fromarray(photo(48, 64)).save(strips, "TIFF")  # one uncompressed strip
    for name, blob, declared in [("taller.tif", _set_tiff_height(strips.getvalue(), 96),
                                  "64 x 96"),
                                 ("taller_tiled.tif", _tiled_tiff(rgb, height=60), "53 x 60")]:
        bad = tmp_path / name
        bad.write_bytes(blob)
        with pytest.raises(ImageReadError) as info:
            load_image(bad)
        assert str(info.value) == (f"{bad}: truncated or corrupt image data (pixel data "
                                   f"ends before the declared {declared})")


def test_lying_sizes_in_other_formats_are_refused_in_bounded_memory(tmp_path: Path) -> None:
    small = photo(48, 64)
    gif = bytearray(_encoded("GIF", small))
    screen = bytearray(gif)
    struct.pack_into("<HH", screen, 6, 14000, 14000)  # logical screen only
    frame = bytearray(screen)
    struct.pack_into("<HH", frame, _gif_descriptor(frame) + 5, 14000, 14000)
    tif = _set_tiff_height(_encoded("TIFF", small), 14000)
    bmp = bytearray(_encoded("BMP", small))
    struct.pack_into("<ii", bmp, 18, 14000, 14000)
    for name, blob in [("screen.gif", screen), ("frame.gif", frame), ("tall.tif", tif),
                       ("big.bmp", bmp)]:
        bad = tmp_path / name
        bad.write_bytes(bytes(blob))
        rss, msg = _peak_rss_mb(bad)
        assert msg.startswith(f"{bad}: truncated or corrupt image data"), msg
        assert rss < 1024, (name, rss)  # the GIF screen decoded at 2.8 GB before


def test_well_formed_files_are_not_taken_for_short_data(tmp_path: Path) -> None:
    rgb = photo(123, 157)
    jpegs = {"444.jpg": {"subsampling": 0}, "prog.jpg": {"progressive": True},
             "restart.jpg": {"restart_marker_blocks": 4}, "opt.jpg": {"optimize": True}}
    for name, kw in jpegs.items():
        Image.fromarray(rgb).save(tmp_path / name, quality=85, **kw)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.jpg", quality=70)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=80)
    Image.fromarray(rgb).save(tmp_path / "two.mpo", "MPO", save_all=True,
                              append_images=[Image.fromarray(rgb[::-1].copy())])
    for name in [*jpegs, "grey.jpg", "cmyk.jpg", "two.mpo"]:
        assert load_image(tmp_path / name).size == (157, 123), name
    # Highly compressible files stay far inside the size bounds.
    Image.new("P", (3000, 2000), 3).save(tmp_path / "flat.gif")
    Image.new("RGB", (3000, 2000), (9, 9, 9)).save(tmp_path / "flat.tif",
                                                    compression="tiff_lzw")
    frames = [Image.new("P", (400, 300), k) for k in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert load_image(tmp_path / "flat.gif").size == (3000, 2000)
    assert load_image(tmp_path / "flat.tif").size == (3000, 2000)
    assert load_image(tmp_path / "anim.gif").size == (400, 300)


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


# -- 14: an unreadable folder under -r -----------------------------------------------


def _where_permissions_hold(cmd: list[str]) -> list[str] | None:
    """``cmd`` run so that file modes deny: as is for a user; for root (whom chmod does not
    stop) under setpriv without the two capabilities that bypass them. None if neither."""
    if os.geteuid() != 0:
        return cmd
    if not shutil.which("setpriv"):
        return None
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]


def test_unreadable_folder_under_r_is_a_failure(weights, tmp_path: Path) -> None:
    src = tmp_path / "in"
    a, b = save(src / "a.jpg", quality=30), save(src / "sub" / "b.jpg", seed=1, quality=30)
    save(src / "locked" / "c.jpg", seed=2, quality=30)
    blind = save(src / "blind" / "d.jpg", seed=3, quality=30)  # listable, not enterable
    locked, report = src / "locked", tmp_path / "report.json"
    cmd = _where_permissions_hold([sys.executable, "-m", "rbqe.cli", "enhance", str(src), "-r",
                                   "-o", str(tmp_path / "out"), "--weights", str(weights),
                                   "--report", str(report)])
    locked.chmod(0o000)
    (src / "blind").chmod(0o644)
    try:
        probe = [sys.executable, "-c", "import os, sys; os.listdir(sys.argv[1])", str(locked)]
        if cmd is None or subprocess.run(_where_permissions_hold(probe) or probe,
                                         capture_output=True).returncode == 0:
            pytest.skip("cannot make a folder unreadable here")
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    finally:
        locked.chmod(0o755)
        (src / "blind").chmod(0o755)
    assert out.returncode == 1, out.stderr  # was a warning and exit 0
    errors = [line for line in out.stderr.splitlines() if "error" in line]
    assert errors == [f"rbqe: error: {locked}: cannot read this folder: permission denied",
                      f"rbqe: error: {blind}: permission denied"]
    assert out.stderr.splitlines()[-1] == "rbqe: 2 enhanced, 0 skipped, 2 failed of 4"
    rows = [(e["input"], e["status"]) for e in json.loads(report.read_text())["images"]]
    assert rows == [(str(locked), "failed"), (str(a), "ok"), (str(blind), "failed"),
                    (str(b), "ok")]


# -- 14: a written output name stays with its source -----------------------------------


def test_adding_a_sibling_does_not_rename_a_written_output(weights, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    save(src / "b.jpg", quality=30)
    enhancer = Enhancer(weights, device="cpu")
    first = run_batch(enhancer, [src], BatchOptions(out_dir=out))
    assert first.items[0].status == "ok"
    assert list(first.items[0].outputs.values()) == [out / "b.png"]
    before = ((out / "b.png").read_bytes(), (out / "b.png").stat().st_mtime_ns)
    save(src / "b.png", seed=1)  # the newcomer whose plain output name is also b.png
    second = run_batch(enhancer, [src], BatchOptions(out_dir=out))
    rows = {i.input.name: (i.status, sorted(p.name for p in i.outputs.values()))
            for i in second.items}
    assert rows == {"b.jpg": ("skipped", ["b.png"]), "b.png": ("ok", ["b_png.png"])}
    assert ((out / "b.png").read_bytes(), (out / "b.png").stat().st_mtime_ns) == before
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        ["b.png", "b_png.png"]  # not b_jpg.png: the first output was not made again
    third = run_batch(enhancer, [src], BatchOptions(out_dir=out))
    assert [i.status for i in third.items] == ["skipped", "skipped"]


def test_written_names_in_the_plan(tmp_path: Path) -> None:
    a, b = save(tmp_path / "A" / "x.jpg"), save(tmp_path / "B" / "x.jpg", seed=1)
    out = tmp_path / "out"
    (out / "x.png").parent.mkdir()
    (out / "x.png").write_bytes(b"made from A/x.jpg")
    written = {out / "x.png": a}
    # Another source of the same name gets a name of its own, not A's output.
    assert plan_outputs([(b, None)], out, written=written)[b][None] == out / "x_2.png"
    # The source it was made from keeps it, whatever else is listed beside it.
    plan = plan_outputs([(b, None), (a, None)], out, written=written)
    assert plan[a][None] == out / "x.png" and plan[b][None] != out / "x.png"
    # A name written under another suffix is not today's name.
    other = {out / "x_s.png": a}
    assert plan_outputs([(a, None)], out, written=other)[a][None] == out / "x.png"


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
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != OUTPUT_LOG]


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
    outs = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != OUTPUT_LOG)
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
    assert f"rbqe: info: {files[0]}: the decoder said: libpng error: " in verbose.stderr


def test_each_bad_file_gives_exactly_one_line(weights, tmp_path: Path) -> None:
    crc, lzw = _corrupt_files(tmp_path / "in")
    noise = (np.random.default_rng(2).random((64, 64, 3)) * 255).astype(np.uint8)
    cut = tmp_path / "in" / "cut.tif"  # its IFD cut off: Pillow warned twice, then failed
    cut.write_bytes(_cut(_encoded("TIFF", noise, compression="tiff_lzw")))
    with pytest.warns(UserWarning, match="Corrupt EXIF data"), \
            pytest.raises(UnidentifiedImageError):
        Image.open(cut)
    taller = tmp_path / "in" / "taller.jpg"  # libjpeg's "premature end"
    taller.write_bytes(_jpeg_sized(32, 48))
    files = [crc, lzw, cut, taller]
    out = subprocess.run([sys.executable, "-m", "rbqe.cli", "enhance", *map(str, files),
                          "-o", str(tmp_path / "out"), "--weights", str(weights)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert lines[-1] == "rbqe: 0 enhanced, 0 skipped, 4 failed of 4"
    assert len(lines) == 5, out.stderr
    for f, line in zip(files, lines[:-1], strict=True):
        assert line.startswith(f"rbqe: error: {f}: truncated or corrupt image data")


def test_library_warnings_are_logged_once_and_quietly_for_a_failed_file(caplog) -> None:
    import logging
    import warnings

    from rbqe.io.diagnostics import _logged_warnings

    path = Path("x.tif")
    with caplog.at_level(logging.INFO, logger="rbqe.io"):
        with _logged_warnings(path):
            warnings.warn("Corrupt EXIF data.", UserWarning, stacklevel=1)
            warnings.warn("Corrupt EXIF data.", UserWarning, stacklevel=1)
        with pytest.raises(ImageReadError), _logged_warnings(path):
            warnings.warn("odd chunk", UserWarning, stacklevel=1)
            raise ImageReadError(path, "truncated or corrupt image data")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "x.tif: Corrupt EXIF data."),  # once, though Pillow said it twice
        ("INFO", "x.tif: odd chunk"),  # the error is the failed file's one line
    ]


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


def test_lines_written_while_a_decoder_borrows_fd_2_still_reach_stderr(tmp_path: Path) -> None:
    # A prefetch thread decodes the next image (fd 2 routed to a temp file) while the main
    # thread prints a progress line or the Ctrl-C notice: those must stay on stderr.
    script = (
        "import sys, threading\n"
        "from pathlib import Path\n"
        "from rbqe.io.diagnostics import _native_messages, keep_python_stderr\n"
        "keep_python_stderr()\n"
        "inside, done = threading.Event(), threading.Event()\n"
        "def decode():\n"
        "    with _native_messages(Path('next.jpg')):\n"
        "        inside.set()\n"
        "        done.wait(30)\n"
        "t = threading.Thread(target=decode)\n"
        "t.start()\n"
        "inside.wait(30)\n"
        "print('rbqe: [1/2] a.jpg: exit 3', file=sys.stderr)\n"
        "done.set()\n"
        "t.join()\n"
        "print('rbqe: after', file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == ["rbqe: [1/2] a.jpg: exit 3", "rbqe: after"]


def test_warnings_of_threads_that_load_at_once_stay_with_their_own_file(caplog) -> None:
    # The app's viewer and batch threads load at once. A decoder warning in one thread,
    # after the other thread's block has ended, is still logged for its own file (not
    # raised, as the suite's filterwarnings=error would), and the filters come back as
    # they were once both blocks are done.
    import logging
    import threading
    import warnings

    from rbqe.io.diagnostics import _logged_warnings

    filters, shown = list(warnings.filters), warnings.showwarning
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def a() -> None:
        with _logged_warnings(Path("a.tif")):
            a_in.set()
            b_in.wait(30)
        a_out.set()

    def b() -> None:
        try:
            a_in.wait(30)
            with _logged_warnings(Path("b.tif")):
                b_in.set()
                a_out.wait(30)  # a's block has ended; b's is still open
                warnings.warn("Corrupt EXIF data.", UserWarning, stacklevel=1)
        except BaseException as exc:  # a warning turned error would land here
            errors.append(exc)

    with caplog.at_level(logging.INFO, logger="rbqe.io"):
        threads = [threading.Thread(target=a), threading.Thread(target=b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert not errors
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "b.tif: Corrupt EXIF data.")]
    assert warnings.filters == filters and warnings.showwarning is shown


def test_damaged_jpeg_data_is_said_and_harmless_padding_is_not(tmp_path: Path) -> None:
    # Pillow decodes a JPEG whose coded data is damaged (a bad Huffman code, a scan cut
    # short by a stray marker) without a word: garbled blocks were enhanced and saved as
    # if the photo were whole. Flip one byte at a time through the scan until libjpeg
    # reports damage without running short (that one is refused, as above): in a
    # progressive JPEG, a scan cut short loses the detail its later scans add.
    from rbqe.io.jpeg_data import jpeg_data_check
    from tests.helpers import damaged_jpeg

    good = _encoded("JPEG", photo(96, 128), quality=80, progressive=True)
    bad = damaged_jpeg(tmp_path / "damaged.jpg", good)
    src = load_image(bad)
    (said,) = [w for w in src.warnings if "damaged" in w]
    assert said.startswith("its JPEG data is damaged (libjpeg: Corrupt JPEG data: ")
    assert said.endswith("parts of the picture may be garbled or lack detail, in the "
                         "output too")
    # Cameras pad before the end marker: libjpeg warns of the bytes, the picture is whole.
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(good[:-2] + bytes(16) + good[-2:])
    assert jpeg_data_check(padded) == (False, None)
    assert not load_image(padded).warnings


def test_a_byte_flipped_near_a_restart_marker_is_damage(tmp_path: Path) -> None:
    # libjpeg ends the restart interval early and skips a few bytes ("4 extraneous bytes
    # before marker 0xd6"): the interval's blocks are garbled. A rule that took a few
    # bytes for padding let it pass.
    import re

    import cv2

    from rbqe.io.jpeg_data import _quick_decode, jpeg_data_check

    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:128, 0:128]
    img = (np.stack([np.sin(x / 9) * 60 + 120 + y / 4, np.cos(y / 7) * 50 + 100, (x + y) / 4],
                    -1) + rng.normal(0, 8, (128, 128, 3))).clip(0, 255).astype(np.uint8)
    good = _encoded("JPEG", img, quality=85, restart_marker_blocks=4)
    ref = cv2.imdecode(np.frombuffer(good, np.uint8), cv2.IMREAD_COLOR).astype(int)
    bad_path = tmp_path / "rst.jpg"
    seen = 0
    for marker in [m.start() for m in re.finditer(rb"\xff[\xd0-\xd7]", good)][3:20]:
        for back in range(2, 10):
            bad = bytearray(good)
            bad[marker - back] ^= 0x5A
            if 0xFF in bad[marker - back - 1 : marker - back + 1]:
                continue
            bad_path.write_bytes(bad)
            decoded = cv2.imdecode(np.frombuffer(bytes(bad), np.uint8), cv2.IMREAD_COLOR)
            said = " ".join(_quick_decode(bad_path)[1]).lower()
            if np.abs(decoded.astype(int) - ref).max() <= 40 or \
                    re.search(r"extraneous bytes before marker 0xd[0-7]", said) is None:
                continue  # no visible harm, or not the warning at stake (some say none)
            short, damage = jpeg_data_check(bad_path)
            assert short or damage is not None, (marker, back, said)
            seen += 1
    assert seen > 3  # the loop met such files
