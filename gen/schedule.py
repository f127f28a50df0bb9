"""Junction-pipelining schedules (SPEC section 5): part of the network
description, shared by the hardware (which computes its own from its
latencies) and the golden model (which reproduces it bit for bit)."""

from dataclasses import dataclass

__all__ = ["Schedule"]


@dataclass(frozen=True)
class Schedule:
    """Junction-cycle offsets of FF and BP/UP per junction (index 0 = junction 1).

    Members
    -------
    F, U : tuple of int
        FF and BP/UP offsets in junction cycles.
    spacing : int
        Junction cycles between consecutive samples (1 = pipelined).
    clocks_per_cycle : int or None
        Hardware clocks per junction cycle (a property of the generated
        hardware; informational here).
    offsets : tuple of int or None
        Per-junction clock offsets of the hardware's cycle starts (informational).
    """

    name: str
    F: tuple
    U: tuple
    spacing: int = 1
    clocks_per_cycle: int | None = None
    offsets: tuple | None = None

    def __post_init__(self):
        J = len(self.F)
        if len(self.U) != J or J < 1:
            raise ValueError("F and U need one entry per junction")
        if self.F[0] < 1:
            raise ValueError(f"F[1]={self.F[0]}: junction 1 can only start FF the cycle after "
                             "the sample is loaded (F[1] >= 1)")
        for i in range(1, J):
            if self.F[i] < self.F[i - 1] + 1:
                raise ValueError(f"F[{i + 1}]={self.F[i]} must be >= F[{i}]+1={self.F[i - 1] + 1}")
            if self.U[i - 1] < self.U[i] + 1:
                raise ValueError(f"U[{i}]={self.U[i - 1]} must be >= U[{i + 1}]+1="
                                 f"{self.U[i] + 1}")
        if self.U[-1] < self.F[-1] + 1:
            raise ValueError(f"U[{J}]={self.U[-1]} must be >= F[{J}]+1={self.F[-1] + 1}")
        if self.spacing < 1:
            raise ValueError("spacing must be >= 1")

    @classmethod
    def reference(cls, L, clocks_per_cycle=None):
        """The reference RTL's offsets: ``F[i] = i``, ``U[i] = 2L-1-i``."""
        J = L - 1
        return cls("reference", tuple(range(1, J + 1)),
                   tuple(2 * L - 1 - i for i in range(1, J + 1)), 1, clocks_per_cycle)

    @classmethod
    def sequential(cls, L):
        """No pipelining: each sample finishes its UP before the next starts."""
        ref = cls.reference(L)
        return cls("sequential", ref.F, ref.U, ref.U[0] + 1)

    @property
    def junctions(self):
        return len(self.F)

    @property
    def staleness(self):
        """Per junction: how many immediately preceding samples' updates FF(n)
        does not see yet, ``(U - F) // spacing`` (0 for sequential)."""
        return tuple((u - f) // self.spacing for f, u in zip(self.F, self.U))

    @property
    def latency(self):
        """Junction cycles from loading a sample to its last UP."""
        return self.U[0]

    def total_cycles(self, n_samples):
        """Junction cycles to stream ``n_samples`` and drain the pipeline."""
        if n_samples == 0:
            return 0
        return (n_samples - 1) * self.spacing + self.U[0] + 1

    def to_dict(self):
        return {"name": self.name, "F": list(self.F), "U": list(self.U), "spacing": self.spacing,
                "clocks_per_cycle": self.clocks_per_cycle,
                "offsets": None if self.offsets is None else list(self.offsets)}
