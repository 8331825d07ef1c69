"""What a run directory holds on disk, and what each part of its checkpoint costs.

    python -m bench.disk RUN_DIR [RUN_DIR ...]

A checkpoint holds what ``--resume`` needs to continue bit for bit: both networks
(with G's batch-norm statistics), both Adam states (two moments per weight and the
step counts), the weight average with ``--ema``, the penalty's random stream and
the step.  The parts are told apart by the checkpoint's own key paths.
"""

import argparse
import datetime
import os
import sys

import numpy as np

from bench.common import MACHINE, RESULTS, command_line, shown_path, write_report
from genmnist import import_tensorflow, rundir


def _part(key, weights):
    """Which part of the training state a checkpoint key belongs to."""
    top = key.split("/")[0]
    if top in ("g_optimizer", "d_optimizer"):
        side = "generator" if top == "g_optimizer" else "discriminator"
        return f"{side} weights" if key in weights else f"{side} Adam state"
    if top in ("generator", "discriminator"):
        return f"{top} weights"
    return {"ema_generator": "generator weight average (--ema)"}.get(top, "rng, step, counters")


def checkpoint_parts(run_dir):
    """{part: bytes} of the run's latest checkpoint's tensors."""
    tf = import_tensorflow()
    reader = tf.train.load_checkpoint(rundir.latest_checkpoint(run_dir))
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    weights = {k for k in shapes if "/_trainable_variables/" in k}  # the networks' weights, reached via Adam
    parts = {}
    for key, shape in shapes.items():
        size = int(np.prod(shape)) * dtypes[key].size if dtypes[key] != tf.string else len(reader.get_tensor(key))
        parts[_part(key, weights)] = parts.get(_part(key, weights), 0) + size
    return parts


def _bytes(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def measure(run_dir):
    config = rundir.read_config(run_dir)
    entries = sorted(os.listdir(run_dir))
    command = " ".join(shown_path(word) for word in config.get("command", "?").split())
    return {"run": shown_path(os.path.abspath(run_dir)), "command": command,
            "checkpoints": len([f for f in os.listdir(rundir.path(run_dir, rundir.CHECKPOINTS))
                                if f.endswith(".index")]),
            "checkpoint_files": _bytes(rundir.latest_checkpoint(run_dir) + ".data-00000-of-00001")
            + _bytes(rundir.latest_checkpoint(run_dir) + ".index"),
            "parts": checkpoint_parts(run_dir),
            "directory": {e: _bytes(os.path.join(run_dir, e)) for e in entries if not e.startswith(".")}}


def markdown(info):
    mb = lambda b: f"{b / 1e6:.1f}"  # noqa: E731
    lines = ["# Disk use of a run", "", f"- command: `{info['command']}`", f"- machine: {info['machine']}",
             f"- date: {info['date']}", "",
             "A checkpoint holds what --resume needs to continue bit for bit, nothing more: both networks, both "
             "Adam states (two float32 moments per weight), the weight average with --ema, the random stream and "
             "the step. A run keeps the last --keep-checkpoints (3) of them, plus export/ at its end.", ""]
    for run in info["runs"]:
        lines += [f"## `{run['command']}`", "",
                  f"One checkpoint: {mb(run['checkpoint_files'])} MB; {run['checkpoints']} kept.", "",
                  "| checkpoint part | MB |", "|---|---|"]
        lines += [f"| {name} | {mb(size)} |" for name, size in sorted(run["parts"].items(), key=lambda kv: -kv[1])]
        lines += ["", "| run directory entry | MB |", "|---|---|"]
        lines += [f"| {name} | {mb(size)} |" for name, size in run["directory"].items()]
        lines += [f"| total | {mb(sum(run['directory'].values()))} |", ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.disk", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories written by genmnist.train")
    p.add_argument("--results", default=RESULTS, help="where disk.md and disk.json go")
    args = p.parse_args(argv)
    info = {"command": command_line("bench.disk"), "machine": MACHINE,
            "date": datetime.date.today().isoformat(), "runs": [measure(r) for r in args.runs]}
    write_report(args.results, "disk", info, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
