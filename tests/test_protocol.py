"""The link protocol's description layer (gen/protocol.py): CRC, framing,
the sample codec (lossless for every number format, fuzzed), messages."""

import random

import numpy as np
import pytest

from sparse_edge.gen import protocol as P
from sparse_edge.gen.fixedpoint import QFormat

from .conftest import make_config


def test_crc_matches_the_standard_check_value():
    assert P.crc16(b"123456789") == 0x29B1          # CRC-16/CCITT-FALSE
    assert P.crc16(b"") == 0xFFFF


def test_crc_equations_match_the_table():
    eq = P.crc16_equations()
    rng = random.Random(1)
    for _ in range(500):
        c, d = rng.randrange(1 << 16), rng.randrange(256)
        v = 0
        for i, (cb, db) in enumerate(eq):
            bit = 0
            for k in cb:
                bit ^= (c >> k) & 1
            for k in db:
                bit ^= (d >> k) & 1
            v |= bit << i
        assert v == P.crc16_update(c, d)


def test_frame_round_trip_and_stuffing():
    payload = bytes(range(256)) + bytes([P.SYNC, P.ESC, P.SYNC])
    f = P.host_frame(P.SAMPLE, 7, 1234, payload)           # ack goes modulo 256
    assert f.count(bytes([P.SYNC])) == 1 and f[0] == P.SYNC   # SYNC only starts a frame
    got = P.FrameParser(host=True).feed(f)
    assert len(got) == 1
    assert (got[0].type, got[0].seq, got[0].ack, got[0].payload) == \
        (P.SAMPLE, 7, 1234 % P.INDEX_MOD, payload)
    d = P.device_frame(P.REPORT, 9, b"\x01\xfe\xfd")
    assert P.FrameParser().feed(d)[0].payload == b"\x01\xfe\xfd"


def test_parser_rejects_corrupt_truncated_and_resyncs():
    good = [P.device_frame(P.REPORT, i, bytes([i, i + 1])) for i in range(5)]
    stream = bytearray(good[0])
    bad = bytearray(good[1])
    bad[5] ^= 0x10                                     # a flipped bit
    stream += bad
    stream += good[2][:-3]                             # cut short by the next SYNC
    stream += good[3]
    stream += b"\x00\x11junk"                           # bytes outside a frame
    stream += good[4]
    p = P.FrameParser()
    out = []
    for i in range(0, len(stream), 3):                 # arbitrary chunks
        out += p.feed(stream[i:i + 3])
    assert [f.seq for f in out] == [0, 3, 4]
    assert p.bad == 2


@pytest.mark.parametrize("int_bits,frac_bits", [(1, 4), (2, 5), (2, 7), (3, 8), (2, 9), (3, 12),
                                                (0, 15), (4, 11)])
def test_codec_is_lossless_for_every_format(int_bits, frac_bits):
    fmt = QFormat(int_bits, frac_bits)
    sb = P.symbol_bits(fmt)
    rng = np.random.default_rng(frac_bits)
    for density in (0.0, 0.2, 0.8, 1.0):
        x = ((rng.random((20, 300)) < density) * rng.integers(0, 256, (20, 300))).astype(np.uint8)
        x[:, :3] = [0, 255, 253]
        for img in x:
            code = P.encode_pixels(img, sb)
            dec = P.decode_pixels(code, sb, 300, 320)
            assert (fmt.pixel(dec[:300]) == fmt.pixel(img)).all()
            assert not dec[300:].any()
            if sb <= 7:
                assert P.SYNC not in code and P.ESC not in code   # never needs stuffing


def test_codec_runs_at_their_limits():
    for sb, longest in ((7, P.MAX_RUN_7), (8, P.MAX_RUN_8)):
        img = np.zeros(1000, np.uint8)
        img[[0, longest + 1, 2 * longest + 5, 999]] = 200
        code = P.encode_pixels(img, sb)
        assert (P.decode_pixels(code, sb, 1000) >> (8 - sb) == img >> (8 - sb)).all()
    assert P.encode_pixels(np.zeros(50, np.uint8), 7) == b""     # trailing zeros are implicit


def test_codec_fuzz_random_and_corrupt_codes():
    rng = random.Random(5)
    for sb in (5, 7, 8):
        for _ in range(2000):
            code = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 30)))
            try:
                out = P.decode_pixels(code, sb, 40, 48)
            except P.CodecError:
                continue
            assert out.shape == (48,) and not out[40:].any()
            assert (out & ((1 << (8 - sb)) - 1) == 0).all()


def test_codec_errors_say_what():
    with pytest.raises(P.CodecError, match="more than 4 pixels"):
        P.decode_pixels(bytes([1, 1, 1, 1, 1]), 7, 4)
    with pytest.raises(P.CodecError, match="past the 4 input pixels"):
        P.decode_pixels(bytes([0x80 + 4]), 7, 4)
    with pytest.raises(P.CodecError, match="reserved"):
        P.decode_pixels(bytes([0xFE]), 7, 4)
    with pytest.raises(P.CodecError, match="cut short"):
        P.decode_pixels(bytes([P.RUN_8]), 8, 4)
    with pytest.raises(P.CodecError, match="wider"):
        P.decode_pixels(bytes([0x40]), 5, 4)


def test_mnist_sample_size(mnist):
    """The claim of docs/boards.md: ~187 bytes per MNIST sample frame."""
    x = mnist["x_train"][:1000].reshape(1000, -1)
    sizes = [len(P.stuff(P.encode_pixels(img, 7))) + 11 for img in x]
    assert 150 < np.mean(sizes) < 200
    assert 3_000_000 / 10 / np.mean(sizes) >= 1000        # samples/s at 3 Mbaud


def test_info_round_trip_and_digest():
    cfg = make_config((16, 8, 4), (2, 2), 8)
    pl = P.info_payload(cfg, "fast", 8, 13, 4, 64, 12_000_000, 4)
    info = P.parse_info(pl)
    assert info.layers == (16, 8, 4) and info.fanout == (2, 2) and info.cycle == 8
    assert info.digest == P.network_digest(cfg, "fast") and info.baud == 3_000_000
    assert P.network_digest(cfg, "reference") != info.digest
    assert P.network_digest(cfg.with_(cycle=4), "fast") != info.digest
    # the name and the training settings are not part of the network
    assert P.network_digest(cfg.with_(name="other", **{"training.epochs": 7}), "fast") == \
        info.digest
    with pytest.raises(P.ProtocolError, match="version"):
        P.parse_info(pl[:2] + bytes([P.VERSION + 1]) + pl[3:])
    with pytest.raises(P.ProtocolError, match="not a sparse-edge"):
        P.parse_info(b"XX" + pl[2:])


def test_report_and_params_payloads():
    r = P.Report(P.R_ACCEPTED, 255, 3, 100, 98, bytes([1, 2]))
    assert P.parse_report(P.report_payload(r)) == r
    pl = P.write_payload(1, 1, 300, [-512, 511, 0, -1], 10)
    assert pl[:6] == bytes([1, 1, 44, 1, 0, 4])
    assert list(P.parse_params(pl[6:], 10, 4)) == [-512, 511, 0, -1]
    with pytest.raises(P.ProtocolError):
        P.parse_params(pl[6:], 10, 5)
    with pytest.raises(ValueError):
        P.write_payload(0, 0, 0, [512], 10)
    assert sorted(P.RESULT_PRIORITY) == sorted(P.RESULT_NAMES)
