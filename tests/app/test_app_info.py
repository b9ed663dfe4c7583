"""The Info panel's words for a tiled picture: how many tiles, and with per-tile exits,
how many took each exit; why it was tiled; and what its exits cost once "Compute all
exits" has run it again from exit 1 for the exits auto did not make."""

from __future__ import annotations

import numpy as np
import pytest

from rbqe_studio.info_panel import InfoPanel, tiling_text
from rbqe_studio.queue_panel import status_text
from rbqe_studio.state import fmt_gmacs, fmt_ms
from tests.helpers import jpeg_pixels, second_run, tiled_view, tiny_enhancer, write_jpeg

TIMEOUT = 120_000


@pytest.fixture
def factory():
    """The tiny model, tiling at 128 px: a 300 x 200 photo is cut into tiles."""
    return lambda *_spec: tiny_enhancer(tile=128)


def test_tiling_text_counts_the_tiles_at_each_exit() -> None:
    img = jpeg_pixels(200, 260, seed=4).astype(np.float32) / 255
    per_tile = tiny_enhancer(tile=128, tile_exits="per-tile").enhance(img)
    assert per_tile.tile_exits is not None
    counts = {k: n for k, n in per_tile.tile_exits.histogram.items() if n}
    assert tiling_text(per_tile) == (f"{per_tile.tiles} tiles, each to its own exit: "
                                     + ", ".join(f"{n} at exit {k}" for k, n in counts.items()))
    shared = tiny_enhancer(tile=128, tile_exits="shared").enhance(img, 2)
    assert tiling_text(shared) == f"{shared.tiles} tiles"
    default = tiling_text(tiny_enhancer(tile=128).enhance(img))  # shared: no per-tile count
    assert default.startswith(f"{shared.tiles} tiles") and "own exit" not in default
    assert tiling_text(tiny_enhancer().enhance(img[:64, :64])) == "whole image"


def test_a_tiled_pictures_first_stage_says_it_holds_the_samples() -> None:
    # Its sample walk is counted in exit 1's stage: exit 1 read as the costliest stage.
    img = jpeg_pixels(200, 260, seed=4).astype(np.float32) / 255
    every = tiny_enhancer(tile=128, tile_exits="shared").enhance(img, "all")
    assert tiling_text(every) == f"{every.tiles} tiles; exit 1's stage holds the sample tiles' walk"
    forced = tiny_enhancer(tile=128, tile_exits="shared").enhance(img, 3)
    assert tiling_text(forced) == f"{forced.tiles} tiles"


def test_a_second_run_is_counted_apart_from_the_chosen_exits(qtbot, tmp_path) -> None:
    """After Compute all exits on a tiled picture, Total read "51.89 s · 387.4 GMAC (to
    exit 5)" (the second run's exits 1-4 summed with the first run's exit 5) and Computed
    still "only what the chosen exit needed"."""
    panel = InfoPanel()
    qtbot.addWidget(panel)
    view = tiled_view(write_jpeg(tmp_path / "big.jpg"))
    panel.show_result(view)
    fields = panel.fields
    assert fields["Total"].text() == "32.0 s · 300.0 GMAC (to exit 5)"
    assert fields["Computed"].text() == "only what the chosen exit needed"
    view.add_run(second_run(view))  # as the worker's Compute all does
    panel.show_result(view)
    assert fields["Total"].text() == "32.0 s · 300.0 GMAC (to exit 5)"
    assert fields["Network"].text() == "31.8 s" and fields["IQA"].text() == "100 ms"
    assert fields["Computed"].text() == (
        "52.0 s · 687.5 GMAC in all: first run (exit 5): 32.0 s · 300.0 GMAC; "
        "second run (exits 1–4): 20.0 s · 387.5 GMAC")
    # The per-stage table: the second run's stages; exit 5's GMAC is not taken as the
    # difference to another run's exit 4: its own run's stages 1-5 together, as its card.
    table = panel.table
    assert [table.item(row, 2).text() for row in range(5)] == ["77.5"] * 4 + ["Σ 300"]


def test_the_tiling_row_says_why_a_picture_is_tiled(qtbot, tmp_path) -> None:
    panel = InfoPanel()
    qtbot.addWidget(panel)
    view = tiled_view(write_jpeg(tmp_path / "big.jpg"))
    panel.show_result(view)
    tip = panel.fields["Tiling"].toolTip()
    assert panel.keys["Tiling"].toolTip() == tip
    assert "more pixels than the engine runs in one piece" in tip and "memory" in tip
    assert "1024 × 1024" in tip
    assert "second run" in tip and "Compute all exits" in tip
    panel.clear()  # the next picture, loading: no word left over from this one
    assert panel.fields["Tiling"].toolTip() == ""
    view.result.tiled = False
    panel.show_result(view)
    assert panel.fields["Tiling"].text() == "whole image"
    assert panel.fields["Tiling"].toolTip() == ""


def test_compute_all_on_a_tiled_picture_keeps_what_its_exit_cost(qtbot, window,
                                                                 tmp_path) -> None:
    """The app end to end, on a picture the tiny model tiles: auto makes exit 5 only;
    Compute all exits makes exits 1-4 by a second run, which leaves exit 5's cost as its
    own run spent (queue row, status bar, Total, its card's Σ) and is counted apart."""
    photo = write_jpeg(tmp_path / "in" / "wide.jpg", size=(300, 200), seed=5)
    window.settings.threshold = 1.0  # no exit reaches it: every tile to exit 5
    window.tabs.setCurrentWidget(window.info)
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        window.open_paths([photo])
    view = blocker.args[0]
    r = view.result
    assert r.tiled and r.chosen == 5 and [e.exit for e in r.exits] == [5]
    item = window.session.queue.items[0]
    fields, cards = window.info.fields, window.compare.strip.cards
    before = (item.time_ms, status_text(item), fields["Total"].text(), window.status.text(),
              cards[5].data.lines)
    assert fmt_ms(item.time_ms) in before[1] and fmt_ms(item.time_ms) in before[3]
    assert fields["Computed"].text() == "only what the chosen exit needed"
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.compare.strip.compute_button.click()
        assert window.status.text() == ("Computing exits 1–4 of wide.jpg (a tiled picture "
                                        "runs again from exit 1)…")
    assert [e.exit for e in r.exits] == [1, 2, 3, 4, 5]
    assert (item.time_ms, status_text(item), fields["Total"].text(), window.status.text(),
            cards[5].data.lines) == before
    (run,) = view.extra_runs
    assert run.exits == [1, 2, 3, 4]
    for k in run.exits:  # Σ within the second run, said to be that run's
        cum = sum(s.time_ms + s.iqa_ms for j, s in run.stages.items() if j <= k)
        assert cards[k].data.lines[0] == f"Σ {fmt_ms(cum)}" and cards[k].data.run == 2
    assert cards[5].data.run == 1
    first_ms, first_g = r.total_ms, r.exit_result(5).gmacs
    assert fields["Computed"].text() == (
        f"{fmt_ms(first_ms + run.total_ms)} · {fmt_gmacs(first_g + run.gmacs)} in all: "
        f"first run (exit 5): {fmt_ms(first_ms)} · {fmt_gmacs(first_g)}; "
        f"second run (exits 1–4): {fmt_ms(run.total_ms)} · {fmt_gmacs(run.gmacs)}")
