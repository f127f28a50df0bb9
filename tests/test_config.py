"""Config validation: every rule of SPEC section 2 refused with its own message."""
import copy

import pytest

from sparse_edge.gen.config import (ConfigError, legal_cycles, load_config, parse_config)

from .conftest import ROOT

BOARD = {
    "name": "board", "layers": [1024, 64, 32], "fanout": [4, 16], "z": [128, 32],
    "format": {"int_bits": 2, "frac_bits": 7},
    "interleaver": {"kind": "random_start", "seed": 1},
    "data": {"inputs": 784, "classes": 10},
}


def variant(**changes):
    raw = copy.deepcopy(BOARD)
    for key, value in changes.items():
        node = raw
        *path, last = key.split("__")
        for p in path:
            node = node[p]
        if value is None:
            node.pop(last)
        else:
            node[last] = value
    return raw


ILLEGAL = [
    ("C not dividing an edge count",
     variant(z=None, cycle=48), r"rule 1: C=48 does not divide the 4096 edges of junction 1"),
    ("z not dividing the edges",
     variant(z=[100, 32]), r"rule 1: z\[0\]=100 does not divide the 4096 edges"),
    ("fo not dividing C",
     {**variant(z=None, cycle=8), "layers": [1024, 64, 32], "fanout": [4, 16]},
     r"rule 2: fan-out fo=16 of junction 2 does not divide C=8"),
    ("neither C|N nor N|C",
     {**variant(z=None, cycle=48), "layers": [96, 96, 32], "fanout": [8, 16]},
     r"rule 3: junction 1: neither C=48 divides N\[1\]=96 nor|rule 3: junction 2: neither"),
    ("duplicate-edge pattern",
     {**variant(z=None, cycle=12), "layers": [12, 6, 4], "fanout": [4, 2],
      "interleaver": {"kind": "random_start", "seed": 3}, "data": {"inputs": 12, "classes": 4}},
     r"rule 4: junction \d .*duplicate edge"),
    ("fan-in not integral",
     variant(layers=[1024, 60, 32]), r"fan-in not integral: junction 1 has p\*fo"),
    ("z per junction implying different C",
     variant(z=[128, 64]), r"must share one junction-cycle length C .* implies C=\[32, 16\]"),
    ("z and cycle disagree", variant(cycle=64), r"z=\[128, 32\] and cycle=64 disagree"),
    ("format too narrow for the pixel mapping",
     variant(format={"int_bits": 2, "frac_bits": 3}), r"too narrow for the pixel mapping"),
    ("format cannot hold the target 1.0",
     variant(format={"int_bits": 0, "frac_bits": 7}), r"int_bits must be >= 1 .*1\.0"),
    ("format too wide", variant(format={"int_bits": 4, "frac_bits": 14}),
     r"19 bits wide; at most 16"),
    ("unknown interleaver kind",
     variant(interleaver={"kind": "random_strat"}),
     r"unknown interleaver kind 'random_strat' \(did you mean 'random_start'\?\)"),
    ("misspelled key", {**variant(), "fanouts": [4, 16]},
     r"unknown key 'fanouts' in top level; did you mean 'fanout'\?"),
    ("misspelled key in a section", variant(format={"int_bits": 2, "fracbits": 7}),
     r"unknown key 'fracbits' in \[format\]; did you mean 'frac_bits'\?"),
    ("missing key", variant(fanout=None), r"missing required key 'fanout'"),
    ("no parallelism", variant(z=None), r"missing parallelism: give z .* or cycle"),
    ("wrong fanout length", variant(fanout=[4]), r"fanout must have 2 entries"),
    ("fan-out larger than the right layer", variant(fanout=[65, 16]),
     r"fanout\[0\]=65 exceeds the 64 right neurons"),
    ("inputs larger than the input layer", variant(data={"inputs": 2000, "classes": 10}),
     r"data.inputs=2000 exceeds the input layer"),
    ("single layer", {**variant(), "layers": [1024]}, r"at least 2 layers"),
    ("learning rate out of range", {**variant(), "training": {"eta_exp": [3, 99]}},
     r"eta_exp entry must be <= 15"),
    ("unknown schedule", {**variant(), "training": {"schedule": "fastest"}},
     r"unknown schedule 'fastest'"),
    ("non-integer layer", variant(layers=[1024, 64.0, 32]), r"layers\[1\] must be an integer"),
]


@pytest.mark.parametrize("what,raw,pattern", ILLEGAL, ids=[c[0] for c in ILLEGAL])
def test_illegal_config_refused(what, raw, pattern):
    with pytest.raises(ConfigError, match=pattern):
        parse_config(raw)


def test_illegal_messages_are_distinct():
    messages = set()
    for _, raw, _ in ILLEGAL:
        with pytest.raises(ConfigError) as e:
            parse_config(raw)
        messages.add(str(e.value).split(". legal")[0])
    assert len(messages) == len(ILLEGAL)


def test_wrong_cycle_lists_legal_cycles_of_board_network():
    with pytest.raises(ConfigError) as e:
        parse_config(variant(z=None, cycle=48))
    msg = str(e.value)
    for c, z in [(16, "256,64"), (32, "128,32"), (1024, "4,1")]:
        assert f"C={c} (z={z})" in msg
    assert "C=8 " not in msg and "C=2048" not in msg


def test_legal_cycles_board_network():
    assert legal_cycles((1024, 64, 32), (4, 16)) == [
        (16, (256, 64)), (32, (128, 32)), (64, (64, 16)), (128, (32, 8)), (256, (16, 4)),
        (512, (8, 2)), (1024, (4, 1))]


@pytest.mark.parametrize("name", ["board", "icann", "demo", "wide"])
def test_shipped_configs_load_and_roundtrip(name):
    import tomllib
    cfg = load_config(ROOT / "configs" / f"{name}.toml")
    again = parse_config(tomllib.loads(cfg.to_toml()))
    assert again.to_dict() == cfg.to_dict()
    assert again.digest() == cfg.digest()


def test_board_and_icann_figures():
    board = load_config(ROOT / "configs" / "board.toml")
    assert board.cycle == 32 and board.z == (128, 32) and board.fanin == (64, 32)
    assert board.fmt.width == 10
    icann = load_config(ROOT / "configs" / "icann.toml")
    assert icann.cycle == 16 and icann.z == (512, 32)


def test_with_rederives_z_and_revalidates():
    board = parse_config(variant())
    assert board.with_(cycle=1024).z == (4, 1)
    with pytest.raises(ConfigError, match="rule 1"):
        board.with_(cycle=2048)


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("layers = [1, 2\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
