"""The exit policy: storage in the weights, the rules, the gate's fit, the engine's use of
it, the report's exit_reason, and the blind inputs (tables that lie, no tables, gray)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from rbqe import iqa
from rbqe.engine import Enhancer
from rbqe.errors import WeightsError
from rbqe.exit_policy import (
    EXIT_MODES,
    FEATURES,
    ExitPolicy,
    ExitSignals,
    JpegPrior,
    PolicySet,
    auto_exit,
    choose,
    ends_walk,
    features,
    parse_exit_mode,
    walk,
)
from rbqe.io import load_image
from rbqe.model import NUM_EXITS
from rbqe.train import gate
from rbqe.weights import (
    SHIPPED_MODELS,
    read_info,
    save_weights,
    set_policy,
    set_threshold,
)
from tests.clirun import run_cli
from tests.helpers import jpeg_compress, photo, tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")


def _signals(scores, change=(3.0, 1.0, 0.5, 0.2, 0.1)) -> list[ExitSignals]:
    return [ExitSignals(k + 1, s, change=c, eca=np.full(8, 0.1 * k))
            for k, (s, c) in enumerate(zip(scores, change, strict=False))]


def _gate(coef_on: str, weight: float, tau: float, min_exit: int = 1) -> ExitPolicy:
    """A gate predicting ``weight * feature + 0`` (no standardisation) at every exit."""
    n = len(FEATURES)
    coef = [0.0] * n
    coef[FEATURES.index(coef_on)] = weight
    return ExitPolicy("gate", {"features": list(FEATURES), "tau": tau, "min_exit": min_exit,
                               "mean": [[0.0] * n] * 4, "scale": [[1.0] * n] * 4,
                               "coef": [coef] * 4, "bias": [0.0] * 4})


def test_old_weights_files_load_as_the_assessor_rule(tmp_path):
    path = save_weights(tiny_net(1), tmp_path / "w.safetensors", threshold=0.4, min_exit=3)
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    old = {k: v for k, v in meta.items() if k != "exit_policy"}  # as written before
    save_file(load_file(str(path)), str(path), metadata=old)
    info = read_info(path)
    assert info.policy.rule == "assessor"
    assert info.policy.params == {"threshold": 0.4, "min_exit": 3}
    assert "older weights file" in info.policy.provenance["source"]
    e = Enhancer(path, device="cpu", tile=0)
    assert (e.threshold, e.min_exit, e.policy.rule) == (0.4, 3, "assessor")


def test_policies_round_trip_and_set_policy_keeps_the_others(tmp_path):
    path = save_weights(tiny_net(1), tmp_path / "w.safetensors", threshold=0.3, min_exit=2)
    g = _gate("change", 1.0, 0.5)
    set_policy(path, "gate", g, default=True)
    info = read_info(path)
    assert info.policies.default == "gate" and info.policy == g
    assert info.assessor.params == {"threshold": 0.3, "min_exit": 2}
    set_threshold(path, 0.35)  # recalibrating the assessor keeps the gate and the default
    info = read_info(path)
    assert info.policies.default == "gate" and info.threshold == 0.35 and info.min_exit == 2
    # The legacy keys still follow the assessor policy for older readers.
    with safe_open(str(path), framework="pt") as f:
        assert (f.metadata()["threshold"], f.metadata()["min_exit"]) == ("0.35", "2")
    assert Enhancer(path, device="cpu", tile=0, policy="assessor").policy.rule == "assessor"
    assert Enhancer(path, device="cpu", tile=0, threshold=0.2).policy.params["threshold"] == 0.2


def test_a_missing_policy_and_a_broken_one_are_clear_errors(tmp_path):
    path = save_weights(tiny_net(1), tmp_path / "w.safetensors")
    with pytest.raises(WeightsError, match=r"w\.safetensors: no 'gate' exit policy.*calibrate"):
        Enhancer(path, device="cpu", policy="gate")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    save_file(load_file(str(path)), str(path), metadata={**meta, "exit_policy": "{not json"})
    with pytest.raises(WeightsError, match=r"w\.safetensors: bad metadata"):
        read_info(path)


def test_assessor_rule_walks_like_auto_exit():
    rng = np.random.default_rng(0)
    for _ in range(50):
        scores = rng.uniform(0, 1, NUM_EXITS).tolist()
        t, m = float(rng.uniform(0.2, 0.9)), int(rng.integers(1, 6))
        d = walk(ExitPolicy.assessor(t, m), _signals(scores))
        assert d.stop and d.exit == auto_exit(scores, t, m)


def test_one_exit_mode_parser_for_the_engine_and_the_cli():
    from rbqe.cli import build_parser

    assert [parse_exit_mode(m) for m in EXIT_MODES] == ["auto", "all", 1, 2, 3, 4, 5]
    assert [parse_exit_mode(k) for k in range(1, NUM_EXITS + 1)] == [1, 2, 3, 4, 5]
    for bad in (0, 6, "6", "best", "1.5", "", None):
        with pytest.raises(ValueError, match="exit mode must be auto, all or 1-5"):
            parse_exit_mode(bad)
    cli = build_parser()
    for text, mode in (("auto", "auto"), ("all", "all"), ("4", 4)):
        assert cli.parse_args(["enhance", "x", "-o", "y", "--exit", text]).exit_mode == mode


def test_choose_reports_the_forced_exit_or_where_auto_stops():
    policy = ExitPolicy.assessor(0.5, 2)
    signals = _signals([0.9, 0.6, 0.7, 0.2, 0.1])
    # auto and all: the first exit from min_exit on whose score reaches the threshold
    for mode in ("auto", "all"):
        exit_, d = choose(policy, mode, signals)
        assert exit_ == 2 and d.stop and d.exit == 2
    assert ends_walk("auto", d) and not ends_walk("all", d) and not ends_walk(2, d)
    exit_, d = choose(policy, 4, signals[:4])
    assert exit_ == 4 and d.signal == "forced" and d.text == "exit 4 was asked for"
    # never reached: the last exit, which ends the walk; signals that end before it (the
    # forced exits the walk was given) leave the last decision, not a stop
    high = ExitPolicy.assessor(0.95, 1)
    assert choose(high, "auto", signals)[0] == NUM_EXITS
    exit_, d = choose(high, "all", signals[:3])
    assert exit_ == NUM_EXITS and d.exit == 3 and not d.stop


def test_assessor_last_exit_says_from_which_exit_no_score_reached_the_threshold():
    # Exit 1 scores 0.9 but the rule starts at exit 3: "no exit reached 0.95" alone
    # contradicted the 0.9 a user sees on exit 1's card.
    from rbqe_studio.exits import card_reason

    signals = _signals([0.96, 0.6, 0.7, 0.2, 0.1])
    exit_, d = choose(ExitPolicy.assessor(0.95, 3), "auto", signals)
    assert (exit_, d.signal, d.values["min_exit"]) == (NUM_EXITS, "last exit", 3)
    assert d.text.endswith("none of exits 3-5 reached the quality score 0.950")
    assert card_reason(d) == "last exit: no score of exits 3-5 reached 0.950"
    _, d = choose(ExitPolicy.assessor(0.97, 1), "auto", signals)
    assert d.text.endswith("no exit reached the quality score 0.970")
    assert card_reason(d) == "last exit: no score reached 0.970"
    # Only exit 5 asked: "none of exits 5-5" read as a slip.
    _, d = choose(ExitPolicy.assessor(0.95, NUM_EXITS), "auto", signals)
    assert d.text.endswith("exit 5 did not reach the quality score 0.950")
    assert card_reason(d) == "last exit: exit 5's score did not reach 0.950"


def test_gate_reason_gives_the_predicted_gain_to_a_thousandth():
    # 0.047 under a tau of 0.05 read "< 0.05 dB more (+0.05 dB)" at two decimals.
    # Predicted gains 0.094 x (3.0, 1.0, 0.5): 0.282, 0.094, then 0.047 at exit 3.
    d = walk(_gate("change", 0.094, tau=0.05), _signals([0.5] * 5))
    assert (d.exit, d.signal) == (3, "gate")
    assert d.text.endswith("predicts < 0.05 dB more from going on (+0.047 dB)")
    # 0.0496 to a thousandth is 0.050, which is not below 0.05: a fourth decimal says it.
    d = walk(_gate("change", 0.0992, tau=0.05), _signals([0.5] * 5))
    assert (d.exit, d.signal) == (3, "gate")
    assert d.text.endswith("predicts < 0.05 dB more from going on (+0.0496 dB)")


def test_gate_stops_when_the_predicted_gain_falls_below_tau_and_says_why():
    # Predicted gain = the change from the previous exit: 3.0, 1.0, 0.5, 0.2 -> stops at 3.
    g = _gate("change", 1.0, tau=0.6)
    prior = JpegPrior(85, tuple([4] * 64), tuple([6] * 64))
    d = walk(g, _signals([0.5] * 5), prior)
    assert (d.stop, d.exit, d.signal) == (True, 3, "gate")
    assert d.values["predicted_gain_db"] == pytest.approx(0.5)
    assert d.text.startswith("JPEG quality ≈ 85 and the gate predicts < 0.6 dB more")
    assert walk(_gate("change", 1.0, tau=0.6, min_exit=4), _signals([0.5] * 5)).exit == 4
    last = walk(_gate("change", 1.0, tau=-1.0), _signals([0.5] * 5))
    assert (last.exit, last.signal) == (5, "last exit")


def test_gate_thresholds_per_exit_override_the_one_tau_and_are_said():
    # Predicted gains 3.0, 1.0, 0.5, 0.2 at exits 1-4; one tau of 0.3 from exit 3 stops at
    # exit 4 (0.5 >= 0.3, 0.2 < 0.3).
    one = _gate("change", 1.0, tau=0.3, min_exit=3)
    assert one.taus == [0.3] * 4 and walk(one, _signals([0.5] * 5)).exit == 4

    def per(*taus: float) -> ExitPolicy:
        return ExitPolicy(one.rule, {**one.params, "taus": list(taus)})

    d = walk(per(0.3, 0.3, 0.6, 0.1), _signals([0.5] * 5))
    assert (d.exit, d.signal, d.values["tau_db"]) == (3, "gate", 0.6)
    assert "predicts < 0.6 dB more" in d.text
    last = walk(per(0.3, 0.3, 0.3, 0.1), _signals([0.5] * 5))
    assert (last.exit, last.signal) == (5, "last exit")
    assert "at least 0.3 dB (exit 3), 0.1 dB (exit 4) more" in last.text
    assert per(9, 9, 0.3, 0.1).describe() == (
        "learned gate: from exit 3 on, stop when it predicts < 0.3 dB (exit 3), 0.1 dB "
        "(exit 4) more from going on")
    assert one.describe().endswith("predicts < 0.3 dB more from going on")
    with pytest.raises(ValueError, match="taus"):
        per(0.3, 0.6)


def test_per_exit_thresholds_never_cost_more_than_one_and_keep_the_limits():
    rng = np.random.default_rng(4)
    n = 360
    x = rng.normal(size=(n, NUM_EXITS, len(FEATURES)))
    col = FEATURES.index("change1")
    # Most of the gain comes at exit 4 for some images, at exit 5 for others.
    late = (x[:, 0, col] > 0).astype(float)
    psnr = np.stack([30 + 0.3 * (k >= 3) * (1 - late) + 0.3 * (k >= 4) * late
                     + 0.02 * k for k in range(NUM_EXITS)], 1)
    psnr += rng.normal(scale=0.02, size=psnr.shape)
    recs = gate.GateRecords(x, psnr, np.tile([1.0, 2, 3, 4, 5], (n, 1)), psnr[:, 0] - 1,
                            np.repeat([10, 50, 90], n // 3), np.zeros(n, bool),
                            np.array([f"p{i}" for i in range(n)]))
    params = gate.fit(recs, ridge=0.1)
    one = gate.choose_operating_point(params, recs, 0.05, 0.5, per_exit=False)
    per = gate.choose_operating_point(params, recs, 0.05, 0.5, per_exit=True)
    assert one["taus"] == [one["tau"]] * 4
    assert per["views"]["tables"]["macs"] <= one["views"]["tables"]["macs"]
    assert per["views"]["tables"]["worst_qf_loss_db"] <= 0.05
    assert max(per["views"][v]["worst_qf_loss_db"] for v in ("blind", "lying")) <= 0.5
    chosen = gate.gate_exits(gate.predictions(params, recs.x), per["taus"], per["min_exit"])
    assert gate.measure(recs, chosen)["macs"] == pytest.approx(per["views"]["tables"]["macs"])


def test_jpeg_prior_reads_the_files_own_tables(tmp_path):
    for q, mode in ((20, "RGB"), (90, "L")):
        path = tmp_path / f"q{q}.jpg"
        Image.fromarray(photo(64, 64)).convert(mode).save(path, quality=q)
        src = load_image(path)
        prior = JpegPrior.of(src)
        assert prior is not None and prior.quality == q
        assert (prior.chroma is None) == (mode == "L")
    q20, q90 = (JpegPrior.of(load_image(tmp_path / f"q{q}.jpg")).features()[0] for q in (20, 90))
    assert q20 > q90 + 1  # coarser steps: log2 of the mean step is larger
    png = tmp_path / "p.png"
    Image.fromarray(photo(64, 64)).save(png)
    assert JpegPrior.of(load_image(png)) is None


def test_assess_gives_the_score_and_its_block_statistics():
    y = torch.from_numpy(jpeg_compress(photo(96, 80), 20)[..., 1].astype(np.float32) / 255)
    a = iqa.assess(y[None, None])
    assert a.score == float(iqa.score_torch(y))
    assert 0 < a.smooth_share < 1 and 0 <= a.blockiness <= 1 and 0 <= a.blur <= 1


def test_engine_walk_gathers_signals_and_auto_all_and_tiles_agree(jpeg_image):
    net = tiny_net(3)
    g = _gate("change", 1.0, tau=float("inf"), min_exit=2)  # stops at exit 2 via the gate
    e = Enhancer(net=net, device="cpu", tile=0, policy=g)
    auto, every = e.enhance(jpeg_image), e.enhance(jpeg_image, "all")
    assert auto.chosen == every.chosen == 2 and len(auto.exits) == 2
    assert auto.exit_reason["signal"] == "gate" and every.exit_reason == auto.exit_reason
    s = every.exits[2].signals
    assert s.change > 0 and s.eca is not None and s.eca.shape == (8,)
    assert features([x.signals for x in every.exits], None, False).shape == (len(FEATURES),)
    assert [x.decision.stop for x in every.exits] == [False, True, True, True, True]
    tiled = Enhancer(net=net, device="cpu", tile=64, policy=g)
    assert tiled.enhance(jpeg_image).chosen == tiled.enhance(jpeg_image, "all").chosen == 2
    forced = e.enhance(jpeg_image, 4)
    assert forced.chosen == 4 and forced.exit_reason["signal"] == "forced"


def test_gate_fit_learns_the_gain_from_the_features():
    rng = np.random.default_rng(1)
    n = 300
    x = rng.normal(size=(n, NUM_EXITS, len(FEATURES)))
    col = FEATURES.index("change1")
    # The gain still to come falls with the exit and grows with change1.
    psnr = np.stack([30 + 0.1 * k - (4 - k) * 0.2 * (1 + x[:, 0, col]) for k in range(5)], 1)
    x[:, :, col] = x[:, :1, col]
    recs = gate.GateRecords(x, psnr, np.tile([1.0, 2, 3, 4, 5], (n, 1)), psnr[:, 0] - 1,
                            np.repeat([10, 50, 90], n // 3), np.zeros(n, bool),
                            np.array([f"p{i}" for i in range(n)]))
    params = gate.fit(recs, ridge=0.1)
    pred = gate.predictions(params, recs.x)
    truth = recs.psnr[:, -1:] - recs.psnr[:, :-1]
    assert np.corrcoef(pred[:, 0], truth[:, 0])[0, 1] > 0.95
    point = gate.choose_operating_point(params, recs, 0.05, 0.1)
    table = gate.compare(recs, ExitPolicy("gate", {**params, "tau": point["tau"],
                                                   "min_exit": point["min_exit"]}),
                         ExitPolicy.assessor(), 0.05)
    assert table["gate (tables)"]["worst_qf_loss_db"] <= 0.05
    assert table["gate (tables)"]["macs"] < 1.0  # it does stop early on the easy ones
    # The oracle meets the same bar at no more cost than any fixed exit that meets it.
    oracle = table["oracle (<= 0.05 dB per QF)"]
    assert oracle["worst_qf_loss_db"] <= 0.05 and oracle["macs"] <= table["gate (tables)"]["macs"]


def test_gate_fit_clips_the_gains_it_learns_from():
    # A photo that gains 5 dB pulls the fit as one that gains the clip's top, no more.
    rng = np.random.default_rng(2)
    n = 90
    x = rng.normal(size=(n, NUM_EXITS, len(FEATURES)))
    psnr = np.tile(30 + 0.05 * np.arange(NUM_EXITS), (n, 1))
    recs = gate.GateRecords(x, psnr, np.tile([1.0, 2, 3, 4, 5], (n, 1)), psnr[:, 0] - 1,
                            np.repeat([10, 50, 90], n // 3), np.zeros(n, bool),
                            np.array([f"p{i}" for i in range(n)]))
    at_top, outlier = (gate.GateRecords(**vars(recs)) for _ in range(2))
    at_top.psnr, outlier.psnr = psnr.copy(), psnr.copy()
    at_top.psnr[0, :-1] = psnr[0, -1] - gate.GAIN_CLIP[1]
    outlier.psnr[0, :-1] = psnr[0, -1] - 5.0
    assert gate.fit(at_top, clip=gate.GAIN_CLIP) == gate.fit(outlier, clip=gate.GAIN_CLIP)
    assert gate.fit(at_top) != gate.fit(outlier)


def test_calibrate_gate_end_to_end_and_the_report_says_why(tmp_path, capsys):
    train, val = tmp_path / "train", tmp_path / "val"
    for folder, seeds in ((train, range(4)), (val, range(10, 13))):
        folder.mkdir()
        for s in seeds:
            Image.fromarray(photo(64, 64, seed=s)).save(folder / f"p{s}.png")
    weights = save_weights(tiny_net(3), tmp_path / "w.safetensors", threshold=0.3)
    args = ["calibrate", str(val), "--policy", "gate", "--train", str(train), "--weights",
            str(weights), "--qf", "10", "50", "--crop", "0", "--device", "cpu",
            "--records-dir", str(tmp_path / "rec"), "--json", str(tmp_path / "cal.json"),
            "--make-default"]
    rc, err = run_cli(args)
    assert rc == 0, err
    assert (tmp_path / "rec" / "train.npz").is_file() and "written" in err
    rc, err = run_cli(args)  # a second run reuses the records
    assert rc == 0 and "reusing" in err
    info = read_info(weights)
    assert info.policies.default == "gate"
    assert info.policy.provenance["source"] == "rbqe calibrate --policy gate"
    doc = json.loads((tmp_path / "cal.json").read_text())
    assert {"exit 5", "assessor", "gate (tables)", "gate (blind)"} <= set(doc["table"])

    jpg = tmp_path / "in" / "a.jpg"
    jpg.parent.mkdir()
    Image.fromarray(photo(64, 64, seed=20)).save(jpg, quality=30)
    rc, err = run_cli(["enhance", str(jpg), "-o", str(tmp_path / "out"), "--weights",
                       str(weights), "--device", "cpu", "--exit", "all", "--report",
                       str(tmp_path / "r.json")])
    assert rc == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    item = report["images"][0]
    assert report["policy"]["rule"] == "gate"
    assert item["exit_reason"]["exit"] == item["exit"]
    assert item["exit_reason"]["signal"] in ("gate", "last exit", "min_exit")
    assert "JPEG quality ≈ 30" in item["exit_reason"]["text"] or item["exit"] == NUM_EXITS
    capsys.readouterr()
    rc, out = _info(weights, capsys)
    assert out["exit_policy"]["default"] == "gate"
    assert "learned gate" in out["exit_policy"]["policies"]["gate"]["description"]
    # One threshold unless asked for one per exit (then stored beside it).
    assert "taus" not in info.policy.params
    rc, err = run_cli([*args, "--tau-per-exit"])
    assert rc == 0, err
    gate_policy = read_info(weights).policy
    assert len(gate_policy.params["taus"]) == NUM_EXITS - 1
    assert gate_policy.params["tau"] == doc["policy"]["params"]["tau"]


def _info(weights: Path, capsys) -> tuple[int, dict]:
    from rbqe.cli import main

    rc = main(["info", "--weights", str(weights), "--device", "cpu"])
    return rc, json.loads(capsys.readouterr().out)


def test_policy_gate_on_weights_without_one_is_one_clear_error(tmp_path, tiny_weights):
    jpg = tmp_path / "a.jpg"
    Image.fromarray(photo(64, 64)).save(jpg, quality=30)
    rc, err = run_cli(["enhance", str(jpg), "-o", str(tmp_path / "o"), "--weights",
                       str(tiny_weights), "--policy", "gate", "--device", "cpu"])
    assert rc == 2 and "no 'gate' exit policy" in err and err.count("\n") == 1


# -- blind inputs, with the shipped weights and every policy they carry ------------------------
def _blind_cases(tmp_path: Path, seed: int) -> dict[str, tuple[Path, np.ndarray]]:
    """The blind inputs of issue 11, each with its clean original."""
    clean = photo(128, 128, seed=seed)
    gray = np.asarray(Image.fromarray(clean).convert("L"))
    q20 = io.BytesIO()
    Image.fromarray(clean).save(q20, "JPEG", quality=20)
    decoded = Image.open(q20)
    cases = {}
    p = tmp_path / f"resaved{seed}.jpg"
    decoded.save(p, "JPEG", quality=95)  # its tables say 95; the picture is q20
    cases["q20 re-saved q95"] = (p, clean)
    p = tmp_path / f"png_of_q20_{seed}.png"
    decoded.save(p)  # no tables at all
    cases["PNG of a q20 JPEG"] = (p, clean)
    p = tmp_path / f"scan{seed}.jpg"
    Image.fromarray(gray).save(p, "JPEG", quality=40)  # a grayscale scan
    cases["grayscale scan"] = (p, gray)
    return cases


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    b = np.round(np.clip(b, 0, 1) * 255)
    b = b[..., 0] if a.ndim == 2 else b
    return 10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2))


@pytest.mark.parametrize("model", sorted(SHIPPED_MODELS))
@pytest.mark.parametrize("name", sorted(PolicySet.from_meta({}).policies) + ["gate", "default"])
def test_blind_inputs_lose_at_most_0_1_db_against_exit_5(tmp_path, name, model):
    weights = SHIPPED_MODELS[model]
    if not weights.is_file():
        pytest.skip(f"no shipped weights {weights.name}")
    info = read_info(weights)
    if name == "gate" and "gate" not in info.policies.policies:
        pytest.skip(f"{weights.name} carries no gate (rbqe calibrate --policy gate)")
    enh = Enhancer(weights, device="cpu", tile=0, policy=None if name == "default" else name)
    losses: dict[str, list[float]] = {}
    for seed in range(3):
        for case, (path, clean) in _blind_cases(tmp_path, seed).items():
            src = load_image(path)
            r = enh.enhance(src.pixels, "all", prior=JpegPrior.of(src))
            loss = _psnr(clean, r.exit_result(5).image) - _psnr(clean, r.image)
            losses.setdefault(case, []).append(loss)
    means = {case: float(np.mean(v)) for case, v in losses.items()}
    assert all(m <= 0.1 for m in means.values()), means
