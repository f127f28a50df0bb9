# amaranth: UnusedElaboratable=no
"""The portable system top (hdl/system.py): the host driver through the UART
pins, in Amaranth's simulator (small network, 4 clocks per bit: the fewest a board build uses)."""

import numpy as np
import pytest

from sparse_edge.boards.host import Board
from sparse_edge.gen import protocol as P
from sparse_edge.gen.geometry import hardware_schedule
from sparse_edge.hdl.system import LED_NAMES, SystemTop
from sparse_edge.sim.golden import GoldenModel

from .conftest import make_config
from .linksim import CLOCK_HZ, SimPort

CFG = make_config((16, 8, 4), (2, 2), 8)


def test_system_top_over_its_uart_pins():
    top = SystemTop(CFG, "fast", divisor=4, clock_hz=CLOCK_HZ, slots=2, pred_ring=8,
                    stretch_bits=6)
    assert top.info == P.info_payload(CFG, "fast", 8, top.network.drain_samples(), 2, 8,
                                      CLOCK_HZ, 4)
    port = SimPort(top, divisor=4, chunk=200)
    board = Board(port, CFG, timeout=1.0, retry=0.2, clock=lambda: port.seconds)
    assert board.info.divisor == 4 and board.info.slots == 2
    rng = np.random.default_rng(3)
    x = ((rng.random((3, 16)) < 0.6) * rng.integers(0, 256, (3, 16))).astype(np.uint8)
    y = rng.integers(0, 4, 3)
    p = board.train(x, y, 3)
    g = GoldenModel(CFG).run(x, y, 3, hardware_schedule(CFG, "fast")).predictions
    assert (p == g).all()
    st = board.status()
    assert st["frames_bad"] == 0 and st["rx_framing"] == 0 and st["rx_overflow"] == 0
    # the phase's samples, then its drain (Board.train ends every phase so)
    assert st["samples_accepted"] == 3 + board.info.drain_samples


def test_leds_show_activity():
    top = SystemTop(CFG, "fast", divisor=4, clock_hz=CLOCK_HZ, stretch_bits=4)
    port = SimPort(top, divisor=4, probes=[top.leds])
    good = P.host_frame(P.HELLO, 1, 0)
    port.write(good + good[:-3] + P.host_frame(P.HELLO, 3, 0))   # the second is cut short
    port.run(8000)
    got = P.FrameParser().feed(port.read())
    assert [f.seq for f in got] == [1, 3]          # no answer to the cut-short frame
    bits = {name: {(v[0] >> i) & 1 for v in port.probed} for i, name in enumerate(LED_NAMES)}
    assert bits["heartbeat"] == {0, 1} and bits["link"] == {0, 1} and bits["error"] == {0, 1}


@pytest.mark.parametrize("bad", [{"divisor": 1}, {"slots": 3}, {"pred_ring": 6}])
def test_parameters_are_checked(bad):
    with pytest.raises((ValueError, TypeError)):
        SystemTop(CFG, **({"divisor": 4} | bad))
