"""The exit policy: when ``auto`` stops, from which signals, and why.

One :class:`ExitPolicy` names a rule, its parameters and where they came from
(``provenance``). The weights file stores the policies fitted for it (JSON in the
safetensors metadata, see :mod:`rbqe.weights`); the engine, the CLI, the app and
calibration all decide through :func:`walk`.

Rules
-----
``assessor``
    The paper's rule on our calibration: stop at the first exit ``>= min_exit`` whose
    Tchebichef score (:mod:`rbqe.iqa`) reaches ``threshold``. Old weights files, which
    carry only ``threshold`` and ``min_exit``, load as this rule.
``gate``
    A learned gate: at each exit ``>= min_exit`` a linear predictor (per exit) estimates
    the PSNR still to gain by going on to exit 5 from what the network and the assessor
    have already computed (:data:`FEATURES`); auto stops when it predicts less than
    ``tau`` dB. The JPEG's own quantisation tables are inputs when the image is a JPEG,
    and marked absent otherwise, so the same gate serves PNGs and re-saved files. It is
    a few hundred multiply-adds per exit: nothing against exit 1's ~36k MACs per pixel.
``fixed``
    Always the same exit (``exit``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rbqe.arch import NUM_EXITS

ExitMode = str | int  # "auto", "all" or 1..NUM_EXITS
EXIT_MODES = ("auto", "all", *(str(k) for k in range(1, NUM_EXITS + 1)))  # as typed
RULES = ("assessor", "gate", "fixed")
ECA_CHANNELS = 32  # channel means of the newest decoder node the gate reads (width 32)
# The gate's inputs, in order. "change" is the mean absolute luma change (8-bit units)
# from the previous exit (the input for exit 1); "change1" is exit 1's, a blind measure of
# how much there was to repair. q_luma / q_chroma: log2 of the mean quantiser step of the
# JPEG's tables (0 when there are none, with has_tables 0).
BASE_FEATURES = ("score", "blockiness", "blur", "smooth_share", "change", "change1",
                 "has_tables", "q_luma", "q_chroma", "gray")
FEATURES = BASE_FEATURES + tuple(f"eca{c}" for c in range(ECA_CHANNELS))
PAPER_THRESHOLD = 0.855  # the paper's JPEG threshold, the assessor rule's default


# -- exit modes -------------------------------------------------------------------------------
def parse_exit_mode(mode: ExitMode) -> ExitMode:
    """The one exit-mode parser (engine, CLI, app): ``"auto"``, ``"all"``, or an exit
    1..5 given as a number or its digits (``"3"`` -> 3); else ValueError."""
    if isinstance(mode, str) and mode.isdigit():
        mode = int(mode)
    if mode in ("auto", "all") or (isinstance(mode, int) and 1 <= mode <= NUM_EXITS):
        return mode
    raise ValueError(f"exit mode must be auto, all or 1-{NUM_EXITS}, not {mode!r}")


def last_exit(mode: ExitMode) -> int:
    """The deepest exit a mode computes."""
    return mode if isinstance(mode, int) else NUM_EXITS


def check_min_exit(value: int | str) -> int:
    value = int(value)
    if not 1 <= value <= NUM_EXITS:
        raise ValueError(f"min_exit must be 1..{NUM_EXITS}, got {value}")
    return value


# -- signals ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class JpegPrior:
    """What the input file says about its compression: the JPEG quantisation tables.

    Attributes:
        quality: The IJG quality the luma table is closest to (:mod:`rbqe.io`).
        luma: The 64 luma quantiser steps; ``chroma`` the first chroma table's (None for a
            gray JPEG).
    """

    quality: int | None
    luma: tuple[int, ...]
    chroma: tuple[int, ...] | None = None

    @classmethod
    def from_tables(cls, tables: Mapping[int, Sequence[int]] | None,
                    quality: int | None = None) -> JpegPrior | None:
        """From Pillow's ``Image.quantization``; None when there is no usable luma table."""
        if not tables or 0 not in tables or len(tables[0]) != 64:
            return None
        chroma = tuple(int(v) for v in tables[1]) if 1 in tables and len(tables[1]) == 64 else None
        return cls(quality, tuple(int(v) for v in tables[0]), chroma)

    @classmethod
    def of(cls, loaded: Any) -> JpegPrior | None:
        """From a :class:`rbqe.io.LoadedImage` (None unless it was read from a JPEG)."""
        return cls.from_tables(getattr(loaded, "quant_tables", None),
                               getattr(loaded, "jpeg_quality", None))

    def features(self) -> tuple[float, float]:
        """log2 of the mean luma and chroma step (chroma = luma for a gray JPEG)."""
        luma = math.log2(float(np.mean(self.luma)))
        chroma = math.log2(float(np.mean(self.chroma))) if self.chroma else luma
        return luma, chroma


@dataclass
class ExitSignals:
    """What is known about one exit when auto decides whether to stop there.

    Attributes:
        exit: 1..5.
        score: The assessor's score; ``blockiness``, ``blur`` and ``smooth_share`` its
            block statistics (mean blockiness of smooth blocks, mean blur of textured
            blocks, share of smooth blocks).
        change: Mean absolute luma change (8-bit units) from the previous exit's output
            (the input's, for exit 1).
        eca: The newest decoder node's ECA channel means (its upsampled part), or None.
    """

    exit: int
    score: float
    blockiness: float = 1.0
    blur: float = 1.0
    smooth_share: float = 0.0
    change: float = 0.0
    eca: np.ndarray | None = None

    @staticmethod
    def mean(signals: Sequence[ExitSignals]) -> ExitSignals:
        """The average of the same exit's signals over several sample tiles."""
        ecas = [s.eca for s in signals if s.eca is not None]

        def mean(name: str) -> float:
            return float(np.mean([getattr(s, name) for s in signals]))

        return ExitSignals(signals[0].exit, mean("score"), mean("blockiness"), mean("blur"),
                           mean("smooth_share"), mean("change"),
                           eca=np.mean(ecas, axis=0) if ecas else None)


def features(walked: Sequence[ExitSignals], prior: JpegPrior | None, gray: bool) -> np.ndarray:
    """The gate's input vector (:data:`FEATURES`) at the last exit of ``walked``."""
    s = walked[-1]
    q_luma, q_chroma = prior.features() if prior is not None else (0.0, 0.0)
    eca = np.zeros(ECA_CHANNELS) if s.eca is None else np.asarray(s.eca, np.float64)
    eca = np.resize(eca[-ECA_CHANNELS:], ECA_CHANNELS) if eca.size else np.zeros(ECA_CHANNELS)
    base = [s.score, s.blockiness, s.blur, s.smooth_share, s.change, walked[0].change,
            float(prior is not None), q_luma, q_chroma, float(gray)]
    return np.concatenate([np.asarray(base, np.float64), eca])


# -- the policy -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """Auto's verdict at one exit: whether it stops, which signal decided, its values."""

    stop: bool
    exit: int
    signal: str
    values: dict[str, Any]
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"exit": self.exit, "signal": self.signal, "values": self.values,
                "text": self.text}

    @property
    def short(self) -> str:
        """A few words for a small card: what decided at this exit."""
        v = self.values
        if self.signal == "gate":
            sign = "<" if self.stop else "≥"
            return f"gate: {sign} {v['tau_db']:g} dB more"
        if self.signal == "assessor":
            return f"score {'≥' if self.stop else '<'} {v['threshold']:.3f}"
        return {"min_exit": f"before exit {v.get('min_exit')}", "last exit": "last exit",
                "forced": "forced", "fixed": "fixed exit"}.get(self.signal, self.signal)


@dataclass(frozen=True)
class ExitPolicy:
    """An exit rule with its parameters and where they came from.

    Attributes:
        rule: One of :data:`RULES`.
        params: ``assessor``: ``threshold``, ``min_exit``. ``gate``: ``tau`` (dB),
            ``min_exit``, ``features`` (names), and per exit 1..4 ``mean``, ``scale``,
            ``coef`` (lists) and ``bias``; optionally ``taus``, a threshold per exit 1..4
            that overrides ``tau`` (which older readers still use). ``fixed``: ``exit``.
        provenance: Free-form: how and on what the parameters were chosen.
    """

    rule: str
    params: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"exit rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        if self.rule == "gate":
            if list(self.params.get("features", [])) != list(FEATURES):
                raise ValueError("the gate was fitted on other features than this version reads")
            optional = ("taus",) if "taus" in self.params else ()
            for key in ("mean", "scale", "coef", "bias", *optional):
                if len(self.params.get(key, [])) != NUM_EXITS - 1:
                    raise ValueError(f"gate parameter {key!r} needs one entry per exit 1..4")
        if self.rule == "fixed":
            check_min_exit(self.params["exit"])

    # Constructors
    @classmethod
    def assessor(cls, threshold: float = PAPER_THRESHOLD, min_exit: int = 1,
                 provenance: dict[str, Any] | None = None) -> ExitPolicy:
        return cls("assessor", {"threshold": float(threshold),
                                "min_exit": check_min_exit(min_exit)}, provenance or {})

    @classmethod
    def fixed(cls, exit_: int) -> ExitPolicy:
        return cls("fixed", {"exit": check_min_exit(exit_)}, {"source": "fixed exit"})

    @property
    def min_exit(self) -> int:
        return int(self.params.get("min_exit", self.params.get("exit", 1)))

    @property
    def threshold(self) -> float | None:
        t = self.params.get("threshold")
        return None if t is None else float(t)

    @property
    def taus(self) -> list[float]:
        """The gate's threshold (dB) at each exit 1..4."""
        if "taus" in self.params:
            return [float(t) for t in self.params["taus"]]
        return [float(self.params["tau"])] * (NUM_EXITS - 1)

    def _tau_words(self) -> str:
        """The gate's threshold(s) from its first exit on, e.g. "0.07 dB (exit 3), 0.11 dB
        (exit 4)"; one figure when they are all the same."""
        taus = self.taus[self.min_exit - 1:]
        if len(set(taus)) <= 1:
            return f"{taus[0] if taus else self.taus[-1]:g} dB"
        return ", ".join(f"{t:g} dB (exit {k})" for k, t in enumerate(taus, self.min_exit))

    def needs_signals(self) -> bool:
        """Whether the gate's features must be gathered while walking the exits."""
        return self.rule == "gate"

    def predict_gain(self, walked: Sequence[ExitSignals], prior: JpegPrior | None,
                     gray: bool) -> float:
        """The gate's predicted PSNR gain (dB) of going on from the last exit walked to
        exit 5."""
        k = walked[-1].exit
        p = self.params
        x = (features(walked, prior, gray) - np.asarray(p["mean"][k - 1])) / np.asarray(
            p["scale"][k - 1])
        return float(np.dot(x, p["coef"][k - 1]) + p["bias"][k - 1])

    def decide(self, walked: Sequence[ExitSignals], prior: JpegPrior | None = None,
               gray: bool = False) -> Decision:
        """Whether auto stops at the last exit of ``walked`` (signals of exits 1..k)."""
        s = walked[-1]
        k = s.exit
        jpeg = _jpeg_words(prior)
        if self.rule == "fixed":
            e = self.params["exit"]
            return Decision(k >= e, k, "fixed", {"exit": e}, f"the policy always takes exit {e}")
        if k < self.min_exit and k < NUM_EXITS:
            return Decision(False, k, "min_exit", {"min_exit": self.min_exit},
                            f"auto never stops before exit {self.min_exit}")
        if self.rule == "assessor":
            t = float(self.params["threshold"])
            ok = s.score >= t
            values: dict[str, Any] = {"score": round(s.score, 4), "threshold": t}
            if ok:
                return Decision(True, k, "assessor", values,
                                f"{jpeg}the quality score {s.score:.3f} reached {t:.3f}")
            if k >= NUM_EXITS:
                # Earlier exits may score higher: they were not asked (min_exit).
                asked = ("no exit reached" if self.min_exit <= 1 else
                         f"exit {NUM_EXITS} did not reach" if self.min_exit >= NUM_EXITS
                         else f"none of exits {self.min_exit}-{NUM_EXITS} reached")
                return Decision(True, k, "last exit", {**values, "min_exit": self.min_exit},
                                f"{jpeg}{asked} the quality score {t:.3f}")
            return Decision(False, k, "assessor", values,
                            f"quality score {s.score:.3f} is below {t:.3f}")
        if k >= NUM_EXITS:
            return Decision(True, k, "last exit", {"tau_db": self.taus[-1]},
                            f"{jpeg}the gate predicted at least {self._tau_words()} more at "
                            f"every earlier exit")
        tau = self.taus[k - 1]
        gain = self.predict_gain(walked, prior, gray)
        values = {"predicted_gain_db": round(gain, 4), "tau_db": tau,
                  "jpeg_quality": prior.quality if prior else None, "score": round(s.score, 4)}
        if gain < tau:
            return Decision(True, k, "gate", values,
                            f"{jpeg}the gate predicts < {tau:g} dB more from going on "
                            f"({_gain_text(gain, tau)} dB)")
        return Decision(False, k, "gate", values,
                        f"the gate predicts {_gain_text(gain, tau)} dB more from going on")

    # Storage
    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "params": self.params, "provenance": self.provenance}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExitPolicy:
        return cls(str(data["rule"]), dict(data["params"]), dict(data.get("provenance", {})))

    def summary(self) -> dict[str, Any]:
        """The policy as a report and ``rbqe info`` show it: rule, description, provenance
        and its small parameters (a gate's thousands of fitted numbers stay in the
        weights file: they made every one-image report 18 KB)."""
        def small(v: Any) -> bool:
            return isinstance(v, (int, float, str, bool)) or (
                isinstance(v, (list, tuple)) and len(v) <= NUM_EXITS
                and all(isinstance(x, (int, float)) for x in v))

        return {"rule": self.rule, "description": self.describe(),
                "params": {k: v for k, v in self.params.items() if small(v)},
                "provenance": self.provenance}

    def words_beside(self, default: ExitPolicy) -> str:
        """This rule as an output's note keeps it (:func:`rbqe.io.made_with`): "the
        weights' default" when it is ``default`` (the weights themselves are noted apart:
        a rule re-fitted and stored in the same network's file is the same rule for its
        outputs), else :meth:`describe`."""
        return "the weights' default" if self == default else self.describe()

    def describe(self) -> str:
        """One line for people: the rule and its parameters."""
        if self.rule == "assessor":
            start = f"from exit {self.min_exit} on, " if self.min_exit > 1 else ""
            return f"assessor: {start}stop when the quality score >= {self.threshold:.3f}"
        if self.rule == "gate":
            start = f"from exit {self.min_exit} on, " if self.min_exit > 1 else ""
            return (f"learned gate: {start}stop when it predicts < {self._tau_words()} "
                    f"more from going on")
        return f"fixed: always exit {self.params['exit']}"


def _jpeg_words(prior: JpegPrior | None) -> str:
    if prior is None:
        return ""
    return f"JPEG quality ≈ {prior.quality} and " if prior.quality else "JPEG tables read and "


def _gain_text(gain: float, tau: float) -> str:
    """The predicted gain to a thousandth, or as many more decimals (up to six) as it
    takes to fall on its own side of ``tau``: 0.0496 under 0.05 read "< 0.05 dB more
    (+0.050 dB)"."""
    for places in (3, 4, 5):
        text = f"{gain:+.{places}f}"
        if (float(text) < tau) == (gain < tau):
            return text
    return f"{gain:+.6f}"


@dataclass
class PolicySet:
    """The policies a weights file carries, and which one ``auto`` uses by default."""

    policies: dict[str, ExitPolicy]
    default: str

    def __post_init__(self) -> None:
        if self.default not in self.policies:
            raise ValueError(f"default policy {self.default!r} is not among "
                             f"{sorted(self.policies)}")

    def get(self, name: str | None = None) -> ExitPolicy:
        name = name or self.default
        if name not in self.policies:
            have = ", ".join(sorted(self.policies))
            raise KeyError(f"no {name!r} exit policy in these weights (they have: {have}); "
                           f"fit one with 'rbqe calibrate --policy {name}'")
        return self.policies[name]

    def to_meta(self) -> str:
        return json.dumps({"default": self.default,
                           "policies": {n: p.to_json() for n, p in self.policies.items()}})

    @classmethod
    def from_meta(cls, meta: Mapping[str, str]) -> PolicySet:
        """From a weights file's metadata; old files (``threshold`` and ``min_exit``
        only, or nothing) give one ``assessor`` policy."""
        check_min_exit(meta.get("min_exit", "1"))  # the legacy key, still written: valid
        if "exit_policy" in meta:
            data = json.loads(meta["exit_policy"])
            return cls({n: ExitPolicy.from_json(p) for n, p in data["policies"].items()},
                       str(data["default"]))
        threshold = float(meta.get("threshold", PAPER_THRESHOLD))
        min_exit = check_min_exit(meta.get("min_exit", "1"))
        source = ("threshold and min_exit metadata of an older weights file"
                  if "threshold" in meta else "the paper's threshold (file carries none)")
        return cls({"assessor": ExitPolicy.assessor(threshold, min_exit, {"source": source})},
                   "assessor")


# -- walking the exits ------------------------------------------------------------------------
def walk(policy: ExitPolicy, signals: Sequence[ExitSignals], prior: JpegPrior | None = None,
         gray: bool = False) -> Decision:
    """The decision that ends auto's walk over exits 1, 2, ... (``signals`` in order): the
    first at which the policy stops. When the signals end before that (a forced exit),
    the last exit's decision is returned with ``stop`` False."""
    d = None
    for k in range(1, len(signals) + 1):
        d = policy.decide(signals[:k], prior, gray)
        if d.stop:
            return d
    assert d is not None, "no exit walked"
    return d


def choose(policy: ExitPolicy, mode: ExitMode, signals: Sequence[ExitSignals],
           prior: JpegPrior | None = None, gray: bool = False) -> tuple[int, Decision]:
    """The exit a result reports for ``mode``, and why: a forced exit as asked; else the
    exit where auto's :func:`walk` stops on ``signals`` (for ``all``: where it would have),
    or the last exit when it never does."""
    if isinstance(mode, int):
        return mode, Decision(True, mode, "forced", {"exit": mode},
                              f"exit {mode} was asked for")
    d = walk(policy, signals, prior, gray)
    return (d.exit if d.stop else NUM_EXITS), d


def ends_walk(mode: ExitMode, decision: Decision) -> bool:
    """Whether the walk over the exits ends at this decision: under ``auto`` when the
    policy stops; a forced exit and ``all`` walk to their last exit."""
    return mode == "auto" and decision.stop


def may_stop(exit_: int, score: float, threshold: float, min_exit: int = 1) -> bool:
    """The assessor rule: auto may stop at exit ``exit_`` when that exit is not before
    ``min_exit`` and its IQA score reaches ``threshold`` (exit 5 ends the walk anyway)."""
    return exit_ >= min_exit and score >= threshold


def auto_exit(scores: Sequence[float], threshold: float, min_exit: int = 1) -> int:
    """The exit the assessor rule takes given the scores of exits 1, 2, ... in order: the
    first at which it may stop, else exit 5."""
    for k, s in enumerate(scores, start=1):
        if may_stop(k, s, threshold, min_exit):
            return k
    return NUM_EXITS
