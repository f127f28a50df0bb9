"""The simulated board: the system top (network + UART + link engine) of
``hdl/system.py``, compiled with the CXXRTL flow of :mod:`.cxxrtl`, its UART
pins bridged to a TCP socket on 127.0.0.1 by ``sim/harness/board.cc``.

The host driver then opens ``socket://127.0.0.1:PORT`` with pyserial, exactly
the code path it uses for ``/dev/ttyUSB1``.  The UART runs at ``divisor``
clocks per bit like on a board; the simulated clock only advances while the
board has something to do (the harness sleeps while the design is idle).

:class:`FaultyLink` is a byte-level proxy between the host and a board that
flips bits, drops and duplicates bytes and whole frames in both directions
(seeded), for the tests of the protocol's recovery.
"""

import random
import select
import socket
import subprocess
import threading
import time

from ..gen import protocol as P
from ..hdl.system import SystemTop
from .cxxrtl import HARNESS_DIR, CompiledSimError, CompiledSimulator

__all__ = ["BoardSimulator", "SimulatedBoard", "FaultyLink", "SIM_DIVISOR", "SIM_BAUD"]

#: Default UART bit time of the simulated board (clocks per bit).
SIM_DIVISOR = 4
#: The baud rate the simulated board's nominal clock corresponds to
#: (clock = divisor * baud, reported in INFO).
SIM_BAUD = 3_000_000


class BoardSimulator(CompiledSimulator):
    """The CXXRTL build of a :class:`~sparse_edge.hdl.system.SystemTop`.

    Parameters
    ----------
    cfg : NetworkConfig
    schedule : "fast" or "reference"
    divisor : int
        UART clocks per bit.
    clock_hz : int, optional
        The clock the board reports (default ``divisor * SIM_BAUD``: the bit
        time of a 3 Mbaud link).
    slots, pred_ring : int
        Link engine buffers (see :class:`~sparse_edge.hdl.link.LinkEngine`).
    """

    harness = HARNESS_DIR / "board.cc"
    ports = {"CLK": "clk", "RST": "rst", "RX": "rx", "TX": "tx", "IDLE": "idle"}

    def __init__(self, cfg, schedule="fast", divisor=SIM_DIVISOR, clock_hz=None, slots=4,
                 pred_ring=64, cache_dir=None, log=None):
        self.divisor = int(divisor)
        self.clock_hz = int(clock_hz or self.divisor * SIM_BAUD)
        self.slots, self.pred_ring = int(slots), int(pred_ring)
        self._system = None
        super().__init__(cfg, schedule, cache_dir=cache_dir, log=log)

    @property
    def system(self):
        """The simulated :class:`~sparse_edge.hdl.system.SystemTop` (created on
        first use: a cached build needs none)."""
        if self._system is None:
            self._system = SystemTop(self.cfg, self.geometry.schedule.name,
                                     divisor=self.divisor, clock_hz=self.clock_hz,
                                     slots=self.slots, pred_ring=self.pred_ring, stretch_bits=8)
        return self._system

    def design(self):
        return self.system

    def design_key(self):
        return ("board", self.geometry.schedule.name, self.divisor, self.clock_hz, self.slots,
                self.pred_ring)


class SimulatedBoard:
    """A running simulated board (context manager): builds (or reuses) the
    CXXRTL model, starts it, and gives the URL to open (:attr:`url`).

    ``board = SimulatedBoard(cfg); url = board.start(); ...; board.stop()``
    """

    def __init__(self, cfg, schedule="fast", divisor=SIM_DIVISOR, clock_hz=None, slots=4,
                 pred_ring=64, cache_dir=None, log=None):
        self.sim = BoardSimulator(cfg, schedule, divisor, clock_hz, slots, pred_ring,
                                  cache_dir=cache_dir, log=log)
        self.proc = None
        self.port = None
        self.lines = []
        self._reader = None

    @property
    def url(self):
        return f"socket://127.0.0.1:{self.port}"

    def build(self):
        return self.sim.build()

    def start(self, timeout=60.0):
        info = self.sim.build()
        exe = info.path / "sim"
        try:
            self.proc = subprocess.Popen([str(exe), str(self.sim.divisor), "0"],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, text=True, bufsize=1)
        except OSError as e:
            raise CompiledSimError(f"cannot start the simulated board {exe}: {e}") from None
        t0 = time.monotonic()
        while True:
            left = timeout - (time.monotonic() - t0)
            ready, _, _ = select.select([self.proc.stderr], [], [], max(0.0, left))
            if not ready:
                self.stop()
                raise CompiledSimError(f"the simulated board did not start in {timeout:g} s")
            line = self.proc.stderr.readline()
            if not line:
                rc = self.proc.wait()
                raise CompiledSimError(f"the simulated board exited with status {rc}: "
                                       + " ".join(self.lines[-3:]))
            line = line.strip()
            self.lines.append(line)
            if line.startswith("@listening "):
                self.port = int(line.split()[1])
                break
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        return self.url

    def _drain(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if len(self.lines) > 200:
                del self.lines[:100]

    def stop(self):
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()           # the harness exits at end of file
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


class FaultyLink:
    """A TCP proxy that damages the link in both directions (seeded).

    Each frame (the bytes from one ``SYNC`` to the next) is hit with
    probability ``rate`` by one fault: a flipped bit, a dropped byte, a
    duplicated byte, the whole frame dropped or the whole frame sent twice.
    ``counts[direction][fault]`` and ``frames[direction]`` record what was
    done ("down": host to board, "up": board to host).  Bytes are forwarded as
    they arrive (a duplicated frame goes out again when the next one starts,
    or after ``linger`` seconds of silence).
    """

    FAULTS = ("flip", "drop_byte", "dup_byte", "drop_frame", "dup_frame")

    def __init__(self, target_port, rate=0.1, seed=0, linger=0.01):
        self.target = ("127.0.0.1", int(target_port))
        self.rate = rate
        self.rng = random.Random(seed)
        self.linger = linger
        self.counts = {d: dict.fromkeys(self.FAULTS, 0) for d in ("down", "up")}
        self.frames = {"down": 0, "up": 0}
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self):
        return f"socket://127.0.0.1:{self.port}"

    def faulted_fraction(self, direction):
        n = self.frames[direction]
        return sum(self.counts[direction].values()) / n if n else 0.0

    def _serve(self):
        while not self._stop:
            try:
                self.listener.settimeout(0.2)
                host, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            board = socket.create_connection(self.target)
            for s in (host, board):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t1 = threading.Thread(target=self._pump, args=(host, board, "down"), daemon=True)
            t2 = threading.Thread(target=self._pump, args=(board, host, "up"), daemon=True)
            t1.start()
            t2.start()
            t1.join()
            t2.join()

    def _pump(self, src, dst, direction):
        plan = None          # (fault, offset) for the current frame
        frame = bytearray()
        pos = 0
        held = None          # a frame to send again
        src.settimeout(self.linger)
        try:
            while not self._stop:
                try:
                    data = src.recv(4096)
                except socket.timeout:
                    if held is not None:
                        dst.sendall(held)
                        held = None
                    continue
                if not data:
                    break
                out = bytearray()
                for b in data:
                    if b == P.SYNC:
                        if held is not None:
                            out += held
                            held = None
                        if plan is not None and plan[0] == "dup_frame":
                            held = bytes(frame)
                        frame = bytearray()
                        pos = 0
                        with self.lock:
                            self.frames[direction] += 1
                            plan = None
                            if self.rng.random() < self.rate:
                                fault = self.rng.choice(self.FAULTS)
                                plan = (fault, self.rng.randrange(0, 12))
                                self.counts[direction][fault] += 1
                    frame.append(b)
                    fault, at = plan if plan is not None else (None, -1)
                    if fault == "drop_frame":
                        pos += 1
                        continue
                    if pos == at and fault == "flip":
                        b ^= 1 << self.rng.randrange(8)
                    elif pos == at and fault == "drop_byte":
                        pos += 1
                        continue
                    elif pos == at and fault == "dup_byte":
                        out.append(b)
                    out.append(b)
                    pos += 1
                if out:
                    dst.sendall(bytes(out))
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self):
        self._stop = True
        try:
            self.listener.close()
        except OSError:
            pass
        self._thread.join(timeout=2)
