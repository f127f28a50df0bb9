"""Comparing a hardware run with the golden model on the same samples.

A run is a list of :class:`Phase` (the hardware counterpart of one
:meth:`GoldenModel.run` call: samples, learning rates, then the drain and a
parameter read-out); :func:`training_phases` lays out the phases of a training
run exactly like ``sparse-edge train``; :func:`check_against_golden` runs the
golden model phase by phase and compares predictions, their clock stamps and
the parameters read back.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from ..gen.config import NO_UPDATE
from .golden import GoldenModel

__all__ = ["Phase", "training_phases", "Mismatch", "CheckReport", "check_against_golden"]


@dataclass
class Phase:
    """A run of samples ending with the drain and a parameter read-out (the
    hardware counterpart of one :meth:`GoldenModel.run` call)."""
    name: str
    samples: np.ndarray                 # indices into the images
    eta_exp: object = NO_UPDATE         # int or per-sample array (NO_UPDATE = evaluate)


def training_phases(cfg, n_train, n_test, epochs=None):
    """Phases of a training run over images ``[train..., test...]``: per epoch
    the training samples shuffled exactly like ``sparse-edge train`` (and with
    its learning-rate schedule), then the test samples without update."""
    phases = []
    for epoch in range(cfg.epochs if epochs is None else epochs):
        order = np.random.default_rng([cfg.shuffle_seed, epoch]).permutation(n_train)
        if n_train:
            phases.append(Phase(f"epoch {epoch + 1} train", order, cfg.eta_for_epoch(epoch)))
        if n_test:
            phases.append(Phase(f"epoch {epoch + 1} test", n_train + np.arange(n_test),
                                NO_UPDATE))
    return phases


@dataclass
class Mismatch:
    """A difference between the compiled RTL and the golden model."""
    phase: str
    what: str            # "prediction", "clock", "weight" or "bias"
    sample: int = None   # index within the phase (predictions, clocks)
    junction: int = None  # 1-based (weights, biases)
    index: int = None    # edge or right-neuron index
    hw: int = 0
    golden: int = 0

    def __str__(self):
        where = (f"sample {self.sample}" if self.sample is not None else
                 f"junction {self.junction} {self.what} {self.index}")
        what = "" if self.sample is None else f" {self.what}"
        return f"{self.phase}: {where}{what}: hw {self.hw}, golden {self.golden}"


@dataclass
class CheckReport:
    ok: bool
    samples: int = 0
    readouts: int = 0
    first: list = field(default_factory=list)     # first Mismatch of each kind
    counts: dict = field(default_factory=dict)    # kind -> number of mismatches
    golden_seconds: float = 0.0

    def lines(self):
        if self.ok:
            return [f"check passed: {self.samples} predictions and their clock stamps identical "
                    f"to the golden model; weights and biases identical bit for bit after all "
                    f"{self.readouts} phases"]
        out = ["check FAILED: " + ", ".join(f"{n} {k} mismatch{'es' if n > 1 else ''}"
                                            for k, n in self.counts.items() if n)]
        out += [f"  first {m.what} mismatch: {m}" for m in self.first]
        return out


def check_against_golden(net, images, labels, phases, result, progress=None):
    """Run the golden model phase by phase on the same samples and compare
    predictions, prediction clocks (against the schedule) and the weights and
    biases read back after each phase.  ``net`` is the simulated network or
    its geometry (anything with ``cfg``, ``schedule`` and
    ``prediction_clock``).  Returns a :class:`CheckReport`."""
    cfg = net.cfg
    gm = GoldenModel(cfg)
    t0 = time.perf_counter()
    rep = CheckReport(True, counts={"prediction": 0, "clock": 0, "weight": 0, "bias": 0})
    first = {}
    done = 0
    for k, ph in enumerate(phases):
        idx = np.asarray(ph.samples)
        base = done
        g = gm.run(images[idx], labels[idx], ph.eta_exp, net.schedule,
                   progress=(lambda n, b=base: progress(b + n)) if progress else None)
        done += len(idx)
        hp, gp = result.predictions[k], g.predictions
        bad = np.flatnonzero(hp != gp)
        rep.counts["prediction"] += len(bad)
        if len(bad) and "prediction" not in first:
            i = int(bad[0])
            first["prediction"] = Mismatch(ph.name, "prediction", sample=i, hw=int(hp[i]),
                                           golden=int(gp[i]))
        expect = np.array([net.prediction_clock(int(n)) for n in result.stream_index[k]],
                          dtype=np.int64)
        bad = np.flatnonzero(result.clocks[k] != expect)
        rep.counts["clock"] += len(bad)
        if len(bad) and "clock" not in first:
            i = int(bad[0])
            first["clock"] = Mismatch(ph.name, "clock", sample=i, hw=int(result.clocks[k][i]),
                                      golden=int(expect[i]))
        for j, ((w, b), (gw, gb)) in enumerate(zip(result.params[k], gm.parameters()), start=1):
            for what, hv, gv in (("weight", w, gw), ("bias", b, gb)):
                bad = np.flatnonzero(hv != gv)
                rep.counts[what] += len(bad)
                if len(bad) and what not in first:
                    e = int(bad[0])
                    first[what] = Mismatch(ph.name, what, junction=j, index=e, hw=int(hv[e]),
                                           golden=int(gv[e]))
        rep.samples += len(idx)
        rep.readouts += 1
    rep.golden_seconds = time.perf_counter() - t0
    rep.first = [first[k] for k in ("prediction", "clock", "weight", "bias") if k in first]
    rep.ok = not rep.first
    return rep
