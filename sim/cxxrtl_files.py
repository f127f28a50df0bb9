"""The files between :class:`~sparse_edge.sim.cxxrtl.CompiledSimulator` and
its C++ harness (``sim/harness/harness.cc``): the input file (header, junction
geometry, images, labels, the sample stream) and the output file
(predictions, their clock stamps, the parameter read-outs; ending in a CRC and
an end marker, so a truncated or corrupted file is refused, never half read).
"""

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import Shape

from ..gen.geometry import READOUT_LATENCY
from .cxxrtl_model import CompiledSimError

__all__ = ["FORMAT_VERSION", "STREAM_DTYPE", "write_input", "RunOutput",
           "read_output"]

#: First bytes of the input and output files, last bytes of the output file.
IN_MAGIC, OUT_MAGIC, END_MAGIC = b"SEHIN001", b"SEHOUT01", b"SEHEND01"
#: Version of both file formats (the harness checks it).
FORMAT_VERSION = 1
INPUT_HEADER = struct.Struct("<8s30I")
OUTPUT_HEADER = struct.Struct("<8s4I2Q")
#: One record of the sample stream: the image index, the learning-rate exponent,
#: update or not, read the parameters out after it or not.
STREAM_DTYPE = np.dtype([("image", "<u4"), ("k", "u1"), ("update", "u1"),
                         ("readout", "u1"), ("pad", "u1")])


def write_input(path, cfg, geometry, beat_layout, result_layout, images, labels, stream,
                stall_every, out_stall_every):
    """The harness's input file: header (the port layouts, sizes, stall
    patterns, time-outs), the junction geometry (``geometry``: a
    :class:`~sparse_edge.gen.geometry.NetworkGeometry`), the images, the
    labels and the sample stream (:data:`STREAM_DTYPE` records)."""
    bl = {name: (f.offset, f.width) for name, f in beat_layout}
    rl = {name: (f.offset, f.width) for name, f in result_layout}
    pix = beat_layout["pixels"].shape
    if Shape.cast(pix.elem_shape).width != 8 or pix.length != cfg.z[0]:
        raise ValueError("the harness expects z[0] 8-bit pixels per beat")
    z1 = cfg.z[0]
    if bl["pixels"][1] != 8 * z1:
        raise ValueError("pixel field width does not match z[0] bytes")
    if cfg.classes > 256:
        raise ValueError("at most 256 classes")
    cps = geometry.clocks_per_sample
    # the header's ro_latency is the Network's READOUT_LATENCY: the harness
    # reads the weights and biases back pipelined, that many edges apart
    header = INPUT_HEADER.pack(
        IN_MAGIC, FORMAT_VERSION, beat_layout.size, result_layout.size,
        geometry.beats_per_sample, z1, bl["pixels"][0], 8, *bl["label"], *bl["lr"],
        *bl["update"],
        *rl["prediction"], *rl["clock"], cfg.fmt.width, len(images), images.shape[1],
        len(stream), cfg.junctions, stall_every, out_stall_every,
        max(1, min(2048, len(stream) // 200 or 1)), 2 * cps + 8,
        1000 * cps + 1000, READOUT_LATENCY, 0, 0)
    geo = np.array([[cfg.edges[j], cfg.z[j], cfg.layers[j + 1], geometry.q[j + 1]]
                    for j in range(cfg.junctions)], dtype="<u4")
    with open(path, "wb") as f:
        f.write(header)
        f.write(geo.tobytes())
        f.write(np.ascontiguousarray(images).tobytes())
        f.write(labels.astype(np.uint8).tobytes())
        f.write(stream.tobytes())


@dataclass
class RunOutput:
    predictions: np.ndarray
    clocks: np.ndarray
    readout_clocks: np.ndarray
    params: list                        # per read-out: flat int32 array
    wall_clocks: int
    network_clocks: int


def read_output(path, n_readouts=None, per_readout=None):
    """Parse and validate the harness's output file; a missing, truncated or
    corrupted file raises :class:`CompiledSimError` (never a partial result)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CompiledSimError(f"the compiled simulation left no output file ({e})") from None
    bad = f"the compiled simulation's output {path} is corrupt or incomplete"
    if len(data) < OUTPUT_HEADER.size + 12:
        raise CompiledSimError(f"{bad} (only {len(data)} bytes)")
    magic, version, n, nr, per, wall, netc = OUTPUT_HEADER.unpack_from(data, 0)
    if magic != OUT_MAGIC or version != FORMAT_VERSION:
        raise CompiledSimError(f"{bad} (bad header)")
    size = OUTPUT_HEADER.size + 4 * n + 8 * n + 8 * nr + 4 * nr * per + 12
    if len(data) != size:
        raise CompiledSimError(f"{bad} ({len(data)} bytes, expected {size})")
    if data[-8:] != END_MAGIC:
        raise CompiledSimError(f"{bad} (no end marker)")
    crc, = struct.unpack_from("<I", data, size - 12)
    if zlib.crc32(data[:size - 12]) != crc:
        raise CompiledSimError(f"{bad} (checksum mismatch)")
    if n_readouts is not None and nr != n_readouts:
        raise CompiledSimError(f"{bad} ({nr} parameter read-outs, expected {n_readouts})")
    if per_readout is not None and per != per_readout:
        raise CompiledSimError(f"{bad} ({per} parameters per read-out, expected {per_readout})")
    o = OUTPUT_HEADER.size
    preds = np.frombuffer(data, "<u4", n, o)
    o += 4 * n
    clocks = np.frombuffer(data, "<u8", n, o)
    o += 8 * n
    rclk = np.frombuffer(data, "<u8", nr, o)
    o += 8 * nr
    flat = np.frombuffer(data, "<i4", nr * per, o).reshape(nr, per)
    return RunOutput(preds, clocks, rclk, [flat[i] for i in range(nr)], wall, netc)
