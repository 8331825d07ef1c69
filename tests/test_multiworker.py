"""--strategy multiworker with two worker processes on this machine (TF_CONFIG on 127.0.0.1 ports)."""

import json
import os
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from genmnist import rundir, train, trained
from genmnist.models import build_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The Adam settings the 1e-4 loss tolerance below was set with (both rates 2e-4 and constant, beta1 0.5,
# beta2 0.999), pinned: the default preset's faster D, and its decaying rates, were measured to carry the two workers'
# reduction-order rounding past it (the decay alone: 1.9e-4 relative at step 2; on two mirrored CPUs it adds none).
# Batch 16 without conftest.TINY's short warm-up: the weight bound below was set after the preset's own warm-up
# (with 2 warm-up steps the two runs differed by 0.15 of the change, against 0.1).
ARGS = ["--loss", "wgan-gp", "--learning-rate", "2e-4", "--d-learning-rate", "2e-4", "--beta1", "0.5",
        "--beta2", "0.999", "--lr-decay-steps", "0", "--batch-size", "16", "--checkpoint-every", "2",
        "--log-every", "2", "--no-export"]
# The first run's length: far more steps than run between its first checkpoint and the kill, so the
# chief cannot finish before the other worker dies (and exit 0 instead of 4).
UNFINISHABLE = 100000


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _launch(out, data_dir, steps, *extra):
    """Both workers of one job, each with its own TF_CONFIG; worker 0 is the chief."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    procs = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        cmd = [sys.executable, "-m", "genmnist.train", "--data-dir", data_dir, "--out", str(out),
               "--strategy", "multiworker", "--steps", str(steps), *ARGS, *extra]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "TF_CONFIG": json.dumps(config)},
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def _finish(procs, timeout=300):
    """(return code, stderr) of each; a process still running at the timeout is a hang: killed, then failed."""
    results = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            tails = [p.communicate()[1][-1500:] for p in procs]
            pytest.fail("a worker hung; stderr tails:\n" + "\n----\n".join(tails))
        results.append((proc.returncode, err))
    return results


def _generator_weights(run_dir):
    generator, _ = trained.load_generator(str(run_dir), average=False)
    return [v.numpy() for v in generator.trainable_variables]


@pytest.mark.slow
def test_two_workers_equal_one_only_the_chief_writes_and_a_lost_worker_resumes(idx_dir, tmp_path):
    out = tmp_path / "two"
    procs = _launch(out, idx_dir, UNFINISHABLE)
    deadline = time.time() + 300
    while not tf.train.latest_checkpoint(str(out / "checkpoints")):  # ready: a checkpoint to resume from
        assert time.time() < deadline and procs[0].poll() is None, "no checkpoint appeared"
        time.sleep(0.1)
    procs[1].kill()  # the non-chief worker dies mid-run
    # The one-device run to compare with trains while the chief waits out the heartbeat timeout that
    # tells it the worker is gone (idle time): as long as the resumed run will be, one checkpoint past
    # the chief's last, which cannot move without the other worker (else it is trained again below).
    one = tmp_path / "one"
    one_steps = int(tf.train.latest_checkpoint(str(out / "checkpoints")).rsplit("-", 1)[1]) + 2
    assert train.main(["--data-dir", idx_dir, "--out", str(one), "--steps", str(one_steps), *ARGS]) == 0
    (chief_code, chief_err), _ = _finish(procs)
    assert chief_code == 4, chief_err[-2000:]
    assert "error: lost another worker" in chief_err and "--resume" in chief_err
    assert "Traceback" not in chief_err
    stopped_at = int(tf.train.latest_checkpoint(str(out / "checkpoints")).rsplit("-", 1)[1])
    assert 0 < stopped_at < UNFINISHABLE
    steps = stopped_at + 2  # the resumed run ends one checkpoint later
    if steps != one_steps:  # a checkpoint the chief had begun before the kill: a reference of the new length
        one = tmp_path / "one-again"
        assert train.main(["--data-dir", idx_dir, "--out", str(one), "--steps", str(steps), *ARGS]) == 0

    results = _finish(_launch(out, idx_dir, steps, "--resume"))
    for code, err in results:
        assert code == 0, err[-2000:]
        assert f"steps {stopped_at}..{steps}" in err  # continues from the last checkpoint
    # Only the chief writes the run directory: one event file per chief process, one set of grids.
    assert sorted(os.listdir(out)) == [".lock", "checkpoints", "config.json", "logs", "progress.gif", "samples"]
    assert len(os.listdir(out / "logs")) == 2
    assert tf.train.latest_checkpoint(str(out / "checkpoints")).endswith(f"ckpt-{steps}")
    worker_dirs = [line.split(": ", 1)[1].rsplit("/checkpoints/", 1)[0] for line in results[1][1].splitlines()
                   if line.startswith("checkpoint (")]
    assert worker_dirs and all(d != str(out) and not os.path.exists(d) for d in worker_dirs)  # a temp dir, removed

    keras.utils.set_random_seed(0)  # the run's initial weights (--seed 0)
    start = [v.numpy() for v in build_models(rundir.read_config(str(one))["preset"])[0].trainable_variables]
    two_workers, one_worker = _generator_weights(out), _generator_weights(one)
    # The reported losses, D(x) and D(G(z)) at every logged step, to 1% of their size: the two workers'
    # reduction order, carried through Adam's early ~lr * sign(g) steps (below), moved them by up to
    # 1.7e-3 relative on one AVX-512 CPU (under 1e-4 on others); the weights carry the check.
    two_logged, one_logged = _logged(out), _logged(one)
    assert sorted(two_logged) == sorted(one_logged) and len(one_logged) == 4 * steps // 2
    for key, value in one_logged.items():
        assert abs(two_logged[key] - value) < 1e-2 * max(1.0, abs(value)), key
    # Weights: each iteration is 5 critic and 1 G update, in which Adam's early ~lr * sign(g) steps
    # turn float-level differences into whole steps for near-zero gradient elements (mirrored
    # test); a penalty misaligned between the workers' slices of the batch exceeds the bound.
    change = np.sqrt(sum(((b - a) ** 2).sum() for a, b in zip(start, one_worker)))
    difference = np.sqrt(sum(((b - a) ** 2).sum() for a, b in zip(one_worker, two_workers)))
    assert change > 1e-3 and difference / change < 0.1


def _logged(run_dir):
    """{(tag, step): value} of the losses, D(x) and D(G(z)) in a run's TensorBoard logs (all its processes)."""
    values = {}
    for name in os.listdir(run_dir / "logs"):
        for event in tf.compat.v1.train.summary_iterator(str(run_dir / "logs" / name)):
            for value in event.summary.value:
                if value.tag in ("d_loss", "g_loss", "D(x)", "D(G(z))"):
                    values[value.tag, event.step] = float(tf.make_ndarray(value.tensor))
    return values
