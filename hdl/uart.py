"""UART receiver and transmitter (8 data bits, no parity, 1 stop bit: 8N1).

Written for this project (Amaranth 0.5 has no UART on PyPI); the structure
follows the usual oversampling-free design: the receiver synchronises the pin
with two flip-flops, finds the falling edge of the start bit, samples every
bit in its middle, and checks the stop bit.  The bit time is ``divisor``
clocks (``clock / baud``, rounded by the caller).
"""

import operator

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["MIN_DIVISOR", "UARTRx", "UARTTx", "divisor_for"]

#: Smallest bit time in clocks (with exact bit timing, as in simulation; a real
#: link wants 4 or more): the receiver samples half a bit after the
#: start edge and needs a few clocks of margin for the synchronizer.
MIN_DIVISOR = 2


def _check_divisor(divisor):
    divisor = operator.index(divisor)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"UART divisor {divisor} too small: at least {MIN_DIVISOR} clocks per "
                         "bit (lower the baud rate or raise the clock)")
    return divisor


def divisor_for(clock_hz, baud):
    """Clocks per bit for ``baud`` at ``clock_hz``, and the baud error in %
    (the receiver tolerates about 3 % between the two ends)."""
    div = max(1, round(clock_hz / baud))
    return div, 100.0 * (clock_hz / div - baud) / baud


class UARTRx(wiring.Component):
    """UART receiver, 8N1.

    Parameters
    ----------
    divisor : int
        Clocks per bit (at least :data:`MIN_DIVISOR`).

    Members
    -------
    rx : In(1)
        The line (idle high); asynchronous, synchronised here with two
        flip-flops.
    o : Out(stream.Signature(8))
        Received bytes.  A byte is offered ``2 + 9.5 * divisor`` clocks (the
        synchronizer, then the middle of the stop bit) after the start edge,
        and held until taken; a byte that completes while the previous one is
        still held is dropped and ``overflow`` pulses.
    overflow : Out(1)
        One-clock pulse: a received byte was lost (``o`` not ready).
    framing_error : Out(1)
        One-clock pulse: the stop bit was low; the byte is dropped and the
        receiver waits for the line to go idle (high) again.
    busy : Out(1)
        A character is being received.

    Throughput: one byte every ``10 * divisor`` clocks at most (the line rate).
    """

    def __init__(self, divisor):
        self.divisor = _check_divisor(divisor)
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "overflow": Out(1),
            "framing_error": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        line = Signal(init=1, name="rx_sync")
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(d), name="rx_timer")
        bits = Signal(range(10), name="rx_bit")       # bits sampled so far (start = 0)
        shreg = Signal(8, name="rx_shreg")
        data = Signal(8, name="rx_data")
        valid = Signal(name="rx_valid")
        m.d.comb += [self.o.payload.eq(data), self.o.valid.eq(valid)]
        with m.If(self.o.ready):
            m.d.sync += valid.eq(0)

        with m.FSM(name="rx_fsm"):
            with m.State("IDLE"):
                with m.If(~line):
                    # first sample in the middle of the start bit
                    m.d.sync += [timer.eq(d // 2 - 1), bits.eq(0)]
                    m.next = "BIT"
            with m.State("BIT"):
                m.d.comb += self.busy.eq(1)
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(d - 1), bits.eq(bits + 1)]
                    with m.If(bits == 0):
                        with m.If(line):          # a glitch, not a start bit
                            m.next = "IDLE"
                    with m.Elif(bits < 9):
                        m.d.sync += shreg.eq(Cat(shreg[1:], line))
                    with m.Else():                # the stop bit
                        with m.If(line):
                            m.d.sync += [data.eq(shreg), valid.eq(1)]
                            with m.If(valid & ~self.o.ready):
                                m.d.comb += self.overflow.eq(1)
                                m.d.sync += [data.eq(data), valid.eq(1)]
                            m.next = "IDLE"
                        with m.Else():
                            m.d.comb += self.framing_error.eq(1)
                            m.next = "BREAK"
            with m.State("BREAK"):
                m.d.comb += self.busy.eq(1)
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """UART transmitter, 8N1.

    Parameters
    ----------
    divisor : int
        Clocks per bit (at least :data:`MIN_DIVISOR`).

    Members
    -------
    i : In(stream.Signature(8))
        Bytes to send; a byte is taken when the previous one's stop bit ends
        (``ready`` is high while idle), so back-to-back bytes go out at the
        full line rate, ``10 * divisor`` clocks each.
    tx : Out(1)
        The line (idle high, registered).
    busy : Out(1)
        A character is being sent.
    """

    def __init__(self, divisor):
        self.divisor = _check_divisor(divisor)
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        timer = Signal(range(d), name="tx_timer")
        left = Signal(range(11), name="tx_left")      # bits still to send
        shreg = Signal(10, init=0x3FF, name="tx_shreg")
        m.d.comb += [self.busy.eq(left != 0), self.i.ready.eq(left == 0)]
        with m.If(left == 0):
            with m.If(self.i.valid):
                # stop bit, data LSB first, start bit
                m.d.sync += [shreg.eq(Cat(0, self.i.payload, 1)), left.eq(10),
                             timer.eq(d - 1), self.tx.eq(0)]
        with m.Else():
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [timer.eq(d - 1), left.eq(left - 1),
                             shreg.eq(Cat(shreg[1:], 1)), self.tx.eq(shreg[1] | (left == 1))]
        return m
