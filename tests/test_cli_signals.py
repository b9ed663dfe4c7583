"""SIGTERM and SIGHUP stop ``rbqe enhance`` as a first Ctrl-C does (tests/test_batch.py has
Ctrl-C's own tests): after the current stage, with the report (``cancelled: true``), the
summary line, no claim or temp file left, and 128 + the signal's number as exit code.

They used to kill the process (``timeout``, systemd, Slurm, ``kill``): no report, no
summary, and the claim of the image in hand left in the output folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from clirun import run_cli
from corpus import pattern
from PIL import Image

from rbqe.engine import Enhancer
from rbqe.io import OUTPUT_LOG

N = 9  # one small first image, then eight slower ones
# The slower ones' side: the signal is sent once the first is out and must land before the
# last is done. At 384 px the eight took about 1 s on a 2-core box (in a CI run beside a
# training run rbqe once exited 0: the hang-up came too late); at 768 px about 3 s.
SLOW = 768


def _photo(path: Path, size: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pattern(size, size, 3, seed=seed)).save(path)


def _finals(out: Path) -> list[str]:
    if not out.exists():
        return []
    return sorted(p.name for p in out.iterdir() if not p.name.startswith("."))


def _hidden(out: Path) -> list[str]:
    """Claims (``.rbqe-claim_*.part``) and temps: what a killed run leaves behind."""
    return sorted(p.name for p in out.iterdir()
                  if p.name.startswith(".") and p.name != OUTPUT_LOG)


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("rbqe: [")]


def _notice(sig: signal.Signals) -> str:
    return f"rbqe: {sig.name}: stopping after the current stage (send it again to abort)"


def test_sigterm_stops_after_the_current_stage_with_report_and_exit_143(weights,
                                                                       tmp_path) -> None:
    src, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "report.json"
    _photo(src / "a00.jpg", 32, 0)  # appears quickly: the signal is sent while b* run
    for i in range(1, N):
        _photo(src / f"b{i:02d}.jpg", SLOW, i)
    with open(tmp_path / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rbqe.cli", "enhance", str(src), "-o", str(out),
             "--weights", str(weights), "--exit", "1", "--report", str(report)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )
    deadline = time.monotonic() + 1800
    while not _finals(out):
        assert proc.poll() is None, f"rbqe exited early ({proc.returncode})"
        assert time.monotonic() < deadline, "timed out waiting for rbqe"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=1800)
    err_text = (tmp_path / "stderr.txt").read_text()
    assert rc == 143, err_text  # 128 + SIGTERM
    done = _finals(out)
    assert len(done) < N, "the batch finished before the signal: make it slower"
    assert _hidden(out) == []  # the claim of the image in hand too
    assert _lines(err_text) == [
        _notice(signal.SIGTERM),
        f"rbqe: {len(done)} enhanced, 0 skipped, 0 failed of {N} (interrupted)",
    ]
    doc = json.loads(report.read_text())
    assert doc["summary"]["cancelled"] is True
    assert sorted(Path(e["outputs"]["1"]).name for e in _ok(doc)) == done
    _in_hand_last(doc)


def _ok(doc: dict) -> list[dict]:
    return [e for e in doc["images"] if e["status"] == "ok"]


def _in_hand_last(doc: dict) -> None:
    """The image the signal caught in hand, if any, is the report's last: stopped, with no
    output."""
    rest = doc["images"][len(_ok(doc)):]
    assert [(e["status"], e["outputs"]) for e in rest] in ([], [("cancelled", {})]), rest


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("times", [1, 2])
def test_stop_signals_act_as_ctrl_c_and_their_handlers_are_restored(
        weights, tmp_path, monkeypatch, name, times) -> None:
    """Once: stop after the image in hand; twice: at once (as a second Ctrl-C). The
    report is written either way, and the exit code is 128 + the signal's number."""
    sig = getattr(signal, name, None)
    if sig is None:
        pytest.skip(f"no {name} here")
    for i in range(3):
        _photo(tmp_path / "in" / f"p{i}.jpg", 16, i)
    real, seen = Enhancer.enhance, {"n": 0}

    def enhance_and_signal(self, image, mode="auto", **kw):
        seen["n"] += 1
        if seen["n"] == 2:
            for _ in range(times):
                os.kill(os.getpid(), sig)
        return real(self, image, mode, **kw)

    monkeypatch.setattr(Enhancer, "enhance", enhance_and_signal)
    caught: list[int] = []

    def recorder(signum, frame) -> None:  # without rbqe's handler the signal ends pytest
        caught.append(signum)

    previous = signal.signal(sig, recorder)
    try:
        report = tmp_path / "report.json"
        rc, err = run_cli(["enhance", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                           "--weights", str(weights), "--report", str(report)])
        restored = signal.getsignal(sig)
    finally:
        signal.signal(sig, previous)
    assert caught == [], "the signal reached the test's handler, not rbqe's"
    assert rc == 128 + sig, err
    assert restored is recorder
    last = ("rbqe: aborted" if times == 2
            else "rbqe: 1 enhanced, 0 skipped, 0 failed of 3 (interrupted)")
    assert _lines(err) == [_notice(sig), last]
    doc = json.loads(report.read_text())
    assert doc["summary"]["cancelled"] is True
    # p1, in hand when the signal came, stopped: reported so (it was left out).
    assert [(Path(e["input"]).name, e["status"]) for e in doc["images"]] == [
        ("p0.jpg", "ok"), ("p1.jpg", "cancelled")]
    assert _hidden(tmp_path / "out") == []


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP here")
def test_an_ignored_sighup_stays_ignored(weights, tmp_path, monkeypatch) -> None:
    """``nohup rbqe enhance ...``: a hang-up must not stop the run it was meant to keep."""
    for i in range(2):
        _photo(tmp_path / "in" / f"p{i}.jpg", 16, i)
    real = Enhancer.enhance

    def enhance_and_hang_up(self, image, mode="auto", **kw):
        os.kill(os.getpid(), signal.SIGHUP)
        return real(self, image, mode, **kw)

    monkeypatch.setattr(Enhancer, "enhance", enhance_and_hang_up)
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        rc, err = run_cli(["enhance", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                           "--weights", str(weights)])
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert rc == 0, err
    assert _lines(err) == ["rbqe: 2 enhanced, 0 skipped, 0 failed of 2"]


def test_a_hung_up_terminal_still_gets_its_report_and_exit_129(weights, tmp_path) -> None:
    """A real hang-up fails every later write to the terminal: the stop notice was
    guarded, but the next progress or summary line raised, ending in a traceback and
    exit code 1. Stderr here is a pipe whose reader has gone (EPIPE, as EIO from a
    hung-up terminal): the batch stops as asked, writes its report, exits 129."""
    src, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "report.json"
    _photo(src / "a00.jpg", 32, 0)
    for i in range(1, N):
        _photo(src / f"b{i:02d}.jpg", SLOW, i)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rbqe.cli", "enhance", str(src), "-o", str(out),
         "--weights", str(weights), "--exit", "1", "--report", str(report)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 1800
    while not _finals(out):
        assert proc.poll() is None, f"rbqe exited early ({proc.returncode})"
        assert time.monotonic() < deadline, "timed out waiting for rbqe"
        time.sleep(0.01)
    assert proc.stderr is not None
    proc.stderr.close()  # the terminal is gone: every write from now on fails
    proc.send_signal(signal.SIGHUP)
    rc = proc.wait(timeout=1800)
    assert rc == 129
    done = _finals(out)
    assert len(done) < N and _hidden(out) == []
    doc = json.loads(report.read_text())
    assert doc["summary"]["cancelled"] is True
    assert sorted(Path(e["outputs"]["1"]).name for e in _ok(doc)) == done
    _in_hand_last(doc)


class _StderrLines:
    """A process's stderr, line by line, read in a thread (a pipe must not fill up)."""

    def __init__(self, pipe) -> None:
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._closed = False
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe) -> None:
        with pipe:
            for raw in pipe:
                with self._new:
                    self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                    self._new.notify_all()
        with self._new:
            self._closed = True
            self._new.notify_all()

    def wait_for(self, text: str | None, timeout: float = 1800) -> bool:
        """Whether a line holding ``text`` comes before stderr is closed (None: wait for
        that)."""
        deadline = time.monotonic() + timeout
        with self._new:
            while not (text is not None and any(text in line for line in self.lines)):
                if self._closed:
                    return False
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting for {text!r}: {self.lines}"
                self._new.wait(left)
            return True

    def text(self) -> str:
        self.wait_for(None)
        return "\n".join(self.lines)


# The program (main() reading its own argv), with its report's write held until the test
# says: a large report on a slow disk, made long enough for a second signal, without a sleep.
_HELD_REPORT = r"""
import os, sys, time
from pathlib import Path
import rbqe.cli as cli

real = cli._write_json

def held(path, data):
    os.write(2, b"test: writing the report\n")
    while not Path(os.environ["RBQE_TEST_GO"]).exists():
        time.sleep(0.01)
    real(path, data)

cli._write_json = held
sys.exit(cli.main())
"""


def _slow_batch(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    _photo(src / "a00.jpg", 32, 0)  # appears quickly: the signal is sent while b* run
    for i in range(1, N):
        _photo(src / f"b{i:02d}.jpg", SLOW, i)
    return src


def _started_and_stopped(cmd: list[str], out: Path, first: signal.Signals,
                         env: dict[str, str] | None = None) -> tuple[subprocess.Popen,
                                                                     _StderrLines]:
    """``cmd`` started, and sent ``first`` once its first output is there."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    err = _StderrLines(proc.stderr)
    deadline = time.monotonic() + 1800
    while not _finals(out):
        assert proc.poll() is None, f"rbqe exited early ({proc.returncode}): {err.text()}"
        assert time.monotonic() < deadline, "timed out waiting for rbqe"
        time.sleep(0.01)
    proc.send_signal(first)
    return proc, err


def _stopping(sig: signal.Signals, then: str) -> str:
    how = "" if sig == signal.SIGINT else f"{sig.name}: "
    return f"rbqe: {how}stopping{then}"


@pytest.mark.parametrize(("first", "second"), [("SIGINT", "SIGINT"), ("SIGTERM", "SIGTERM"),
                                               ("SIGTERM", "SIGINT")])
def test_a_second_signal_while_the_report_is_written_does_not_cut_it_short(
        weights, tmp_path, first, second) -> None:
    """Once the images are done or left, a second Ctrl-C aborted the report's write (no
    report, "aborted", 130 even after a SIGTERM); a second SIGTERM killed the process by
    the signal. Now the report is written whole and the exit code is the first signal's."""
    first_sig, second_sig = signal.Signals[first], signal.Signals[second]
    src, out, report = _slow_batch(tmp_path), tmp_path / "out", tmp_path / "report.json"
    go = tmp_path / "go"
    proc, err = _started_and_stopped(
        [sys.executable, "-c", _HELD_REPORT, "enhance", str(src), "-o", str(out),
         "--weights", str(weights), "--exit", "1", "--report", str(report)], out, first_sig,
        env={**os.environ, "RBQE_TEST_GO": str(go)})
    assert err.wait_for("test: writing the report"), err.text()
    proc.send_signal(second_sig)
    told = err.wait_for(_stopping(second_sig, " once the report is written"))
    go.touch()  # the write goes on
    rc = proc.wait(timeout=1800)
    text = err.text()
    assert told and rc == 128 + first_sig, text
    done = _finals(out)
    again = "Ctrl-C again" if first_sig == signal.SIGINT else "send it again"
    assert _lines(text) == [
        _stopping(first_sig, f" after the current stage ({again} to abort)"),
        "test: writing the report",
        _stopping(second_sig, " once the report is written"),
        f"rbqe: {len(done)} enhanced, 0 skipped, 0 failed of {N} (interrupted)"]
    doc = json.loads(report.read_text())  # whole
    assert doc["summary"]["cancelled"] is True
    assert sorted(Path(e["outputs"]["1"]).name for e in _ok(doc)) == done
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert _hidden(out) == []


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_a_second_signal_as_the_run_ends_keeps_its_exit_code(weights, tmp_path,
                                                             name) -> None:
    """Said its summary, the run shuts down (most of a second, with torch): a second
    Ctrl-C there ended it by the signal with a traceback, a SIGTERM killed it."""
    sig = signal.Signals[name]
    src, out, report = _slow_batch(tmp_path), tmp_path / "out", tmp_path / "report.json"
    proc, err = _started_and_stopped(
        [sys.executable, "-m", "rbqe.cli", "enhance", str(src), "-o", str(out),
         "--weights", str(weights), "--exit", "1", "--report", str(report)], out, sig)
    assert err.wait_for("(interrupted)"), err.text()
    proc.send_signal(sig)
    rc = proc.wait(timeout=1800)
    text = err.text()
    assert rc == 128 + sig and "Traceback" not in text and "aborted" not in text, text
    assert json.loads(report.read_text())["summary"]["cancelled"] is True


class _BusyStderr:
    """A stderr caught mid-print, as the main thread's is when a signal lands inside a
    progress or done line: printing to it again raises what CPython's BufferedWriter
    raises then. Its file descriptor is a pipe the test reads."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def write(self, text: str) -> int:
        raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stderr>'>")

    def flush(self) -> None:
        raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stderr>'>")


def _said_on_busy_stderr(monkeypatch, handle) -> str:
    """What ``handle()`` (a signal handler's call) writes while stderr is mid-print."""
    read, write = os.pipe()
    try:
        monkeypatch.setattr(sys, "stderr", _BusyStderr(write))
        handle()
        os.close(write)
        write = -1
        with os.fdopen(read, "rb") as pipe:
            read = -1
            return pipe.read().decode()
    finally:
        for fd in (read, write):
            if fd >= 0:
                os.close(fd)


def test_a_signal_landing_inside_a_print_still_stops_the_batch(monkeypatch) -> None:
    """CI once saw SIGTERM land while ``rbqe`` printed an image's done line: the handler's
    own print raised "reentrant call" out of the batch, which died with exit 1 and no
    report. The handler's line now goes past the buffer, and the stop is still recorded."""
    from rbqe.cli import _Interrupt

    interrupt = _Interrupt()
    said = _said_on_busy_stderr(monkeypatch, lambda: interrupt(signal.SIGTERM, None))
    assert interrupt.requested and interrupt.exit_code == 128 + signal.SIGTERM
    assert said.strip() == _notice(signal.SIGTERM)


def test_a_ctrl_c_landing_inside_a_training_log_line_still_saves(monkeypatch) -> None:
    """The same for ``rbqe train``: a first Ctrl-C during a progress line would have
    aborted the run without saving its state."""
    import threading
    from types import SimpleNamespace

    from rbqe.train.loop import _stop_on_sigterm

    stop = threading.Event()
    guard = _stop_on_sigterm(SimpleNamespace(_stop=stop, stop=stop.set))
    said = _said_on_busy_stderr(monkeypatch, lambda: guard._interrupt(signal.SIGINT, None))
    assert stop.is_set()
    assert "stopping after this step and saving the state" in said
