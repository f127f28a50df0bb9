"""Lattice ECP5 hardware that is not part of the network itself.

:func:`global_enable` is the ``enable_buffer`` the synthesis flow passes to
:class:`~sparse_edge.hdl.network.Network` on the ECP5: the network's clock
enable, which reaches every register and memory port of the datapath, goes
through a ``DCCA`` (a clock-network buffer with its enable tied high) onto a
global network instead of fabric routing, where its fanout of thousands made
it the critical net (17 ns of routing on board@128, docs/synthesis.md).
"""

from amaranth.hdl import Const, Instance, Signal

__all__ = ["global_enable"]


def global_enable(m, ce):
    """Put ``ce`` on a global buffer in module ``m``; returns the buffered
    signal (``ce_global``), the same value in the same clock."""
    out = Signal(name="ce_global")
    m.submodules.ce_dcca = Instance("DCCA", i_CLKI=ce, i_CE=Const(1, 1), o_CLKO=out)
    return out
