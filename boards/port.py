"""The host's side of the byte transport to a board: opening the port, and
what the host saw of the link (re-exported by :mod:`sparse_edge.boards.host`)."""

from dataclasses import dataclass, field

from .errors import PortError

__all__ = ["open_port", "LinkStats"]


def open_port(url, baudrate=3_000_000):
    """Open ``url`` with pyserial's ``serial_for_url`` (a device path or a
    ``socket://``, ``loop://``, ``rfc2217://`` URL); :class:`PortError` with
    the reason if it does not open."""
    try:
        import serial
    except ImportError:
        raise PortError("the host driver needs pyserial: pip install pyserial") from None
    try:
        port = serial.serial_for_url(url, baudrate=baudrate, timeout=0.005, write_timeout=10)
    except (serial.SerialException, OSError, ValueError) as e:
        raise PortError(f"cannot open port {url!r}: {e}. Give the board's serial device "
                        "(e.g. /dev/ttyUSB1; the ULX3S and the iCEBreaker show up as "
                        "FTDI ports), a socket://HOST:PORT URL, or 'sim'") from None
    # FTDI adapters hold received bytes up to 16 ms by default: ask for 1 ms
    try:
        port.set_low_latency_mode(True)
    except (AttributeError, NotImplementedError, ValueError, OSError, Exception):  # noqa: BLE001
        pass
    return port


@dataclass
class LinkStats:
    """What the host saw of the link (the device's counters are in
    :meth:`~sparse_edge.boards.host.Board.status`)."""
    frames_sent: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    samples_sent: int = 0
    retransmissions: int = 0      # sample frames sent again (go-back-N)
    timeouts: int = 0             # waits that ended with a resend
    polls: int = 0
    busy: int = 0                 # parameter accesses answered BUSY
    replies_ignored: int = 0      # late or duplicated replies
    frames_bad: int = 0           # received frames dropped (CRC, length, cut short)
    results: dict = field(default_factory=dict)   # REPORT results seen, by name

    def to_dict(self):
        d = dict(self.__dict__)
        d["results"] = dict(self.results)
        return d
