"""Qt-free state: queue order, cache eviction, ETA, formatting, settings round trip."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from rbqe_studio.settings import AppSettings, load_settings, load_state, save_settings, save_state
from rbqe_studio.state import DONE, FAILED, WAITING, Eta, Queue, ResultCache, fmt_duration, fmt_ms


def test_queue_dedupes_and_finds_next_waiting(tmp_path: Path) -> None:
    q = Queue()
    a, b, c = (tmp_path / n for n in ("a.jpg", "b.jpg", "c.jpg"))
    assert [i.path for i in q.add([a, b, a])] == [a, b]
    assert q.add([b, c])[0].path == c
    q.items[0].status = DONE
    assert q.next_waiting().path == b
    q.items[1].status = FAILED
    assert q.next_waiting(start=0).path == c
    q.items[2].status = DONE
    assert q.next_waiting() is None
    assert q.counts() == {WAITING: 0, "running": 0, DONE: 2, FAILED: 1, "blocked": 0}


def test_cache_evicts_oldest_but_keeps_newest() -> None:
    cache: ResultCache[str, int] = ResultCache(budget=10)
    assert cache.put("a", 1, 4) == []
    assert cache.put("b", 2, 4) == []
    cache.get("a")  # a is now the most recent
    assert cache.put("c", 3, 4) == ["b"]
    assert "a" in cache and "c" in cache
    assert cache.put("huge", 4, 100) == ["a", "c"]  # the newest stays, however big
    assert len(cache) == 1


def test_cache_lets_pinned_entries_go_only_when_they_alone_pass_the_budget() -> None:
    """The exits a Stop kept are pinned (the row says they are kept), but bounded: the
    others go first, the pinned ones (the oldest first) only past the budget alone."""
    pinned = {"s1", "s2"}
    cache: ResultCache[str, int] = ResultCache(budget=10, pinned=pinned.__contains__)
    assert cache.put("s1", 1, 4) == [] and cache.put("a", 2, 4) == []
    assert cache.put("b", 3, 4) == ["a"]  # not s1, older
    assert cache.put("huge", 4, 100) == ["b"]  # the newest stays; s1 alone fits
    assert "s1" in cache
    assert cache.put("s2", 5, 8) == ["s1", "huge"]  # the pinned alone: 12 of 10
    assert len(cache) == 1 and "s2" in cache


def test_cache_counts_pinned_entries_that_went_before_letting_others_go() -> None:
    """A second Stop's exits push the first's out; a done photo's result that fits
    beside them stays (it went too: counted against the pinned entries that went)."""
    pinned = {"s1", "s2"}
    cache: ResultCache[str, int] = ResultCache(budget=10, pinned=pinned.__contains__)
    cache.put("s1", 1, 6)
    cache.put("done", 2, 3)
    assert cache.put("s2", 3, 6) == ["s1"]  # 3 + 6 fit the 10
    assert "done" in cache and "s2" in cache


def test_eta_and_formatting() -> None:
    eta = Eta(total=10, started=0.0)
    assert eta.remaining_s(5.0) is None
    eta.done = 2
    assert eta.remaining_s(4.0) == 16.0
    assert fmt_ms(12.4) == "12 ms"
    assert fmt_ms(1500) == "1.50 s"
    assert fmt_duration(75) == "1 min 15 s"


def test_settings_round_trip_through_ini(tmp_path: Path) -> None:
    ini = tmp_path / "s.ini"
    store = QSettings(str(ini), QSettings.Format.IniFormat)
    s = AppSettings(device="cpu", exit_mode="3", threshold=0.9, output_format="jpeg",
                    quality=80, suffix="_x", output_dir=str(tmp_path), keep_metadata=False)
    save_settings(store, s)
    save_state(store, "geometry", QByteArray(b"\x01\x02"))
    store.sync()
    again = QSettings(str(ini), QSettings.Format.IniFormat)
    assert load_settings(again) == s
    assert bytes(load_state(again, "geometry")) == b"\x01\x02"


def test_settings_from_a_release_with_two_models_load(tmp_path: Path) -> None:
    # Until 2026-12-03 a Y model shipped too, chosen with settings/model; that key is
    # ignored now (the one shipped model is used), and the others still load.
    ini = tmp_path / "old.ini"
    ini.write_text("[settings]\nmodel=y\nweights_file=\nquality=80\n")
    s = load_settings(QSettings(str(ini), QSettings.Format.IniFormat))
    assert s == AppSettings(quality=80)


def test_settings_repair_bad_values(tmp_path: Path) -> None:
    store = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    for key, value in (("exit_mode", "9"), ("quality", "500"), ("threshold", "abc"),
                       ("output_format", "gif"), ("keep_metadata", "false")):
        store.setValue(f"settings/{key}", value)
    s = load_settings(store)
    assert (s.exit_mode, s.quality, s.threshold, s.output_format) == ("auto", 100, None, "png")
    assert s.keep_metadata is False
    assert AppSettings().mode == "auto" and AppSettings(exit_mode="2").mode == 2
