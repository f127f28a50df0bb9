"""Generation flow: config -> Verilog, RTLIL, memory images, patterns, summary.

``generate`` is deterministic: the same config (and tool versions) gives
byte-identical files (no timestamps, no absolute source paths).
"""


from amaranth.back import rtlil

from ..hdl.network import Network
from . import output
from .config import check_identifier, initial_parameters
from .geometry import WRITE_LATENCY, reference_clocks_per_sample
from .interleaver import save_patterns
from .tools import ToolError, run_yosys, tool_command

__all__ = ["ToolError", "VERILOG_SCRIPT", "emit", "rtlil_to_verilog", "generate"]

#: The Yosys script of Amaranth's Verilog back end (``amaranth.back.verilog``,
#: with ``strip_internal_attrs=True``), run by us on the RTLIL we already have
#: instead of elaborating twice: the Verilog is the same, byte for byte.
VERILOG_SCRIPT = """\
read_rtlil <<rtlil
{rtlil}
rtlil
proc -nomux -norom
memory_collect
attrmap -remove generator -remove top -remove src -remove amaranth.hierarchy \
-remove amaranth.decoding
attrmap -modattr -remove generator -remove top -remove src -remove amaranth.hierarchy \
-remove amaranth.decoding
write_verilog -norename
"""


def rtlil_to_verilog(il):
    """Verilog text of RTLIL text ``il`` (Yosys from ``$YOSYS``, see
    :mod:`sparse_edge.gen.tools`)."""
    return run_yosys(VERILOG_SCRIPT.format(rtlil=il))


def emit(elaboratable, name="sparse_edge_top"):
    """Verilog and RTLIL text of a component (normally a
    :class:`~sparse_edge.hdl.network.Network`); its ports are its signature's
    members."""
    tool_command("yosys")                 # a missing Yosys is reported before elaboration
    il = rtlil.convert(elaboratable, name=name, emit_src=False)
    return rtlil_to_verilog(il), il


def _hex(values, width):
    mask = (1 << width) - 1
    digits = (width + 3) // 4
    return "".join(f"{int(v) & mask:0{digits}x}\n" for v in values)


def generate(cfg, out_dir, schedule="fast", name="sparse_edge_top", progress=print):
    """Write everything needed to use the generated hardware into ``out_dir``.

    Files: ``{name}.v``, ``{name}.il``, ``config.toml`` (resolved),
    ``patterns.npz``, ``init/*.hex`` (weights per junction and bank, biases,
    activation tables; two's complement, one word per line), ``summary.json``
    and ``summary.txt``.  They are published together
    (:func:`~sparse_edge.gen.output.publish`): a failure leaves a previous
    result in ``out_dir`` as it was, and files of a previous run that this one
    does not write (e.g. ``init/*.hex`` of another network) go away.  Returns
    the summary dict.
    """
    check_identifier(name, "top module name (--name)", module=True)
    output.check_dir(out_dir)
    net = Network(cfg, schedule)
    progress(f"elaborating {cfg.name} ({'-'.join(map(str, cfg.layers))}, z={list(cfg.z)}, "
             f"{schedule} schedule) and converting to Verilog ...")
    v, il = emit(net, name)
    geo = net.geometry
    s = net.schedule
    summary = {
        "name": name,
        "config": cfg.to_dict(),
        "config_digest": cfg.digest(),
        "schedule": s.to_dict(),
        "staleness": list(s.staleness),
        "clocks_per_sample": net.clocks_per_sample,
        "reference_rtl_clocks_per_sample": reference_clocks_per_sample(cfg),
        "write_latency": WRITE_LATENCY,
        "drain_samples": net.drain_samples(),
        "beats_per_sample": net.beats_per_sample,
        "input_beat_bits": net.beat_layout.size,
        "multipliers": geo.multipliers(),
        "memory_bits": geo.memory_bits(),
        "copies": {"activations": geo.K_act, "derivatives": geo.K_da[1:],
                   "bp_accumulators": geo.K_acc[1:], "sample_info": geo.K_info},
        "verilog_bytes": len(v),
    }
    lines = [
        f"{name}: {cfg.name} {'-'.join(map(str, cfg.layers))} fo={list(cfg.fanout)} "
        f"z={list(cfg.z)} {cfg.fmt}",
        f"schedule {s.name}: F={list(s.F)} U={list(s.U)} staleness={list(s.staleness)}",
        f"clocks per sample: {net.clocks_per_sample} (C = {cfg.cycle}; reference RTL "
        f"C + 4 = {reference_clocks_per_sample(cfg)})",
        f"input: {net.beats_per_sample} beats of {cfg.z[0]} pixels per sample; drain with "
        f"{net.drain_samples()} no-update samples",
        f"multipliers: {geo.multipliers()}",
        "memory bits: " + ", ".join(f"{k} {v}" for k, v in geo.memory_bits().items()),
    ]
    owned = (f"{name}.v", f"{name}.il", "config.toml", "patterns.npz", "init",
             "summary.json", "summary.txt")
    with output.publish(out_dir, "generate", owned=owned) as out:
        output.write_text(out / f"{name}.v", v)
        output.write_text(out / f"{name}.il", il)
        output.write_text(out / "config.toml", cfg.to_toml())
        save_patterns(out / "patterns.npz", cfg.patterns())
        _write_init(cfg, geo, out / "init")
        output.write_json(out / "summary.json", summary)
        output.write_text(out / "summary.txt", "\n".join(lines) + "\n")
    progress(f"wrote {out_dir}/{name}.v ({len(v)} bytes), {name}.il, config.toml, "
             f"patterns.npz, init/, summary.json")
    return summary


def _write_init(cfg, geo, init):
    """Memory images: weights per junction and bank, biases, activation tables."""
    init.mkdir()
    w = cfg.fmt.width
    for j, (wt, b) in enumerate(initial_parameters(cfg), start=1):
        z = cfg.z[j - 1]
        banks = wt.reshape(cfg.cycle, z)
        for k in range(z):
            output.write_text(init / f"j{j}_w{k}.hex", _hex(banks[:, k], w))
        q = geo.q[j]
        bb = b.reshape(geo.NR[j], q)
        for i in range(q):
            output.write_text(init / f"j{j}_b{i}.hex", _hex(bb[:, i], w))
    table = cfg.activation_table()
    output.write_text(init / "sigma.hex", _hex(table.sigma, w))
    output.write_text(init / "dsigma.hex", _hex(table.dsigma, w))
