"""Output names: :func:`output_path_for` for one input and :func:`plan_outputs` for a
batch (collisions, never over an input), plus the path identity used to compare files."""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from rbqe.io.formats import _FORMAT_ALIASES, _FORMAT_EXT
from rbqe.io.identity import path_key

logger = logging.getLogger("rbqe.io")  # the package's one logger (see diagnostics)

_INPUT_NAME_TAKEN = "output name equals an input file; adding '_rbqe'"


def _check_name_part(value: str, what: str) -> None:
    if any(sep and sep in value for sep in (os.sep, os.altsep, "/")) or value in (".", ".."):
        raise ValueError(f"{what} must not contain path separators: {value!r}")


def _output_ext(fmt: str | None, input_path: Path) -> str:
    if fmt is None:
        return input_path.suffix.lower() or ".png"
    name = _FORMAT_ALIASES.get(fmt.lower().lstrip("."))
    if name is None:
        raise ValueError(f"unsupported output format {fmt!r} (use png, jpeg, webp, tiff or bmp)")
    return _FORMAT_EXT[name]


def _relative_folder(input_path: Path, input_root: Path | None) -> Path:
    if input_root is None:
        return Path()
    for a, b in (
        (input_path, Path(input_root)),
        (input_path.absolute(), Path(input_root).absolute()),
    ):
        try:
            return a.relative_to(b).parent
        except ValueError:
            continue
    logger.debug("%s is not under %s; writing it flat", input_path, input_root)
    return Path()


def _output_name(stem: str, suffix: str, exit_tag: str | None, ext: str) -> str:
    return f"{stem}{suffix}" + (f".{exit_tag}" if exit_tag else "") + ext


def output_path_for(
    input_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    suffix: str = "",
    exit_tag: str | None = None,
    fmt: str | None = "png",
    input_root: str | os.PathLike[str] | None = None,
) -> Path:
    """Returns ``OUTDIR[/REL]/<stem><suffix>[.<exit_tag>].<ext>`` for one input.

    This is the plain rule; :func:`plan_outputs` applies it to a whole batch and resolves
    collisions.

    Args:
        input_path: The input file.
        out_dir: Output folder.
        suffix: Appended to the stem (e.g. ``'_rbqe'``).
        exit_tag: Optional tag such as ``'exit3'`` inserted before the extension.
        fmt: Output format (``'png'``, ``'jpeg'``...); None keeps the input's extension.
        input_root: Folder the input was found in during a recursive scan; its relative
            sub-folders are recreated under ``out_dir``.

    Returns:
        The output path.
    """
    inp = Path(input_path)
    if suffix:
        _check_name_part(suffix, "suffix")
    if exit_tag:
        _check_name_part(exit_tag, "exit_tag")
    root = Path(input_root) if input_root is not None else None
    name = _output_name(inp.stem, suffix, exit_tag, _output_ext(fmt, inp))
    return Path(out_dir) / _relative_folder(inp, root) / name


def _name_key(path: Path) -> str:
    """How planned output names are kept apart: the resolved path case-folded on every
    file system, so that outputs never differ only in case (a folder of them can be
    copied anywhere). Stricter than identity (:func:`rbqe.io.path_key`) on purpose."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        resolved = path.absolute()
    return os.path.normcase(str(resolved)).casefold()


def _file_key(path: Path) -> str:
    """Which input an output was made from: the input's identity (:func:`rbqe.io.path_key`;
    names differing only in case are distinct inputs on a case-sensitive file system)."""
    return path_key(path)


def _sort_key(item: tuple[Path, Path | None]) -> tuple[str, str]:
    text = str(item[0])
    return text.casefold(), text


def plan_outputs(
    inputs: Iterable[tuple[str | os.PathLike[str], str | os.PathLike[str] | None]],
    out_dir: str | os.PathLike[str],
    *,
    suffix: str = "",
    fmt: str | None = "png",
    exit_tags: Iterable[str | None] = (None,),
    written: Mapping[Path, Path] | None = None,
    on_warning: Callable[[Path, str], None] | None = None,
) -> dict[Path, dict[str | None, Path]]:
    """Assigns every input a unique output path per exit tag, deterministically.

    Rules, applied in sorted input order:

    0. Names already written stay with their input (``written``): when ``b.png`` appears
       beside an already enhanced ``b.jpg``, ``b.jpg`` keeps its ``b.png`` output and the
       newcomer is the one given another name. A written name is never given to another
       input.
    1. The plain name from :func:`output_path_for`.
    2. Inputs whose plain names collide (``a.jpg`` and ``a.png`` -> ``a.png``; compared
       case-insensitively) all get their source extension added: ``a_jpg.png``,
       ``a_png.png``.
    3. A name that would be an input file of the batch gets ``_rbqe`` added, with a
       logged warning (outputs must never replace inputs).
    4. Anything still taken gets ``_2``, ``_3``... added.

    Args:
        inputs: ``(file, root)`` pairs as returned by :func:`list_images`.
        out_dir: Output folder.
        suffix: Appended to every stem.
        fmt: Output format, or None to keep each input's extension.
        exit_tags: Tags to plan names for (None = the untagged final output).
        written: Existing outputs of earlier runs and the input each was made from
            (:func:`rbqe.io.output_log.written_outputs`).
        on_warning: Also called with ``(input, message)`` for each warning logged about
            an input's name (rule 3), the message without the input's path: a batch
            keeps it in that image's report entry.

    Returns:
        ``{input file: {exit tag: output path}}``.
    """
    tags = list(dict.fromkeys(exit_tags))
    for tag in tags:
        if tag:
            _check_name_part(tag, "exit_tag")
    if suffix:
        _check_name_part(suffix, "suffix")
    unique: dict[Path, Path | None] = {}
    for file, root in inputs:
        unique.setdefault(Path(file), Path(root) if root is not None else None)
    items = sorted(unique.items(), key=_sort_key)
    input_keys = {_name_key(f) for f, _ in items}
    out = Path(out_dir)

    folders = {f: out / _relative_folder(f, root) for f, root in items}
    clash = Counter((_name_key(folders[f]), f.stem.casefold()) for f, _ in items)

    owner = {_name_key(o): _file_key(src) for o, src in (written or {}).items()}

    def free(keys: Iterable[str], me: str) -> bool:
        return not any(k in taken or k in input_keys or owner.get(k, me) != me for k in keys)

    taken: set[str] = set()
    plan: dict[Path, dict[str | None, Path]] = {}
    for f, _ in items:  # rule 0 first, so that no newcomer takes a written name
        ext = _output_ext(fmt, f)
        kept = _written_stem(f, folders[f], suffix, tags, ext, written or {})
        if kept is not None:
            paths = {t: folders[f] / _output_name(kept, suffix, t, ext) for t in tags}
            keys = {t: _name_key(q) for t, q in paths.items()}
            if free(keys.values(), _file_key(f)):
                taken.update(keys.values())
                plan[f] = paths
    for f, _ in items:
        if f in plan:
            continue
        folder = folders[f]
        ext = _output_ext(fmt, f)
        stem = f.stem
        if clash[(_name_key(folder), stem.casefold())] > 1 and f.suffix:
            stem = f"{stem}_{f.suffix.lstrip('.').lower()}"
        base, n, guarded = stem, 1, False
        while True:
            paths = {t: folder / _output_name(stem, suffix, t, ext) for t in tags}
            keys = {t: _name_key(q) for t, q in paths.items()}
            if not guarded and any(k in input_keys for k in keys.values()):
                logger.warning("%s: %s", f, _INPUT_NAME_TAKEN)
                if on_warning is not None:
                    on_warning(f, _INPUT_NAME_TAKEN)
                base = stem = f"{base}_rbqe"
                guarded = True
                continue
            if not free(keys.values(), _file_key(f)):
                n += 1
                stem = f"{base}_{n}"
                continue
            break
        taken.update(keys.values())
        plan[f] = paths
    return {f: plan[f] for f, _ in items}


def _written_stem(f: Path, folder: Path, suffix: str, tags: list[str | None], ext: str,
                  written: Mapping[Path, Path]) -> str | None:
    """The stem of an output already written for ``f`` under today's naming, if any.

    Only stems these rules make for ``f`` count (its own stem, perhaps with its source
    extension, ``_rbqe`` or a number): an output written under another suffix, format or
    exit mode is not today's name.
    """
    me, here = _file_key(f), _name_key(folder)
    ext_part = f"(?:_{re.escape(f.suffix.lstrip('.').lower())})?" if f.suffix else ""
    grammar = re.compile(re.escape(f.stem) + ext_part + r"(?:_rbqe)?(?:_[0-9]+)?")
    for out in sorted(o for o, src in written.items() if _file_key(src) == me):
        if _name_key(out.parent) != here:
            continue
        for tag in tags:
            tail = _output_name("", suffix, tag, ext)
            stem = out.name[: -len(tail)] if out.name.endswith(tail) else ""
            if stem and grammar.fullmatch(stem):
                return stem
    return None
