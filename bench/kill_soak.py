"""Kill soak: SIGKILL a real training run at random moments, resume it, compare bit for bit.

    python -m bench.kill_soak --data-dir ../shared/data/mnist [--kills 20] [--steps 300]

One uninterrupted reference run, then the same run (same flags and seed) killed with
SIGKILL at ``--kills`` seeded random moments of its attempts and resumed each time
(started afresh when no checkpoint had been written yet).  After each kill every
checkpoint the run lists must read back whole; at the end every tensor of the final
checkpoint (weights, optimizer state, step) and every sample grid must equal the
reference's, byte for byte.  Where each kill landed is inferred from the files it left
(a checkpoint's temporary files: a checkpoint write; a half-written PNG or GIF:
sampling; a half export: export) and from the attempt's last stderr line.  Writes
bench/results/kill_soak.{json,md}.
"""

import argparse
import datetime
import glob
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

from bench.common import DATA_DIR, RESULTS, ROOT, command_line, machine, write_report
from genmnist import rundir


def train_command(args, out, resume):
    return [sys.executable, "-m", "genmnist.train", "--data-dir", args.data_dir, "--out", out,
            "--steps", str(args.steps), "--seed", str(args.run_seed), "--checkpoint-every",
            str(args.checkpoint_every), "--sample-every", str(args.sample_every), "--log-every", "5",
            *(["--resume"] if resume else [])]


def has_checkpoint(out):
    return rundir.latest_checkpoint(out) is not None


def latest_step(out):
    latest = rundir.latest_checkpoint(out)
    return int(latest.rsplit("-", 1)[1]) if latest else None


def _read_lines(path):
    with open(path) as f:
        return [line.strip() for line in f.read().replace("\r", "\n").splitlines() if line.strip()]


def _logged_step(line):
    """N of a progress line ``[###...] N/TOTAL d_loss ...``; None for other lines."""
    if not line.startswith("[") or "] " not in line:
        return None
    count = line.split("] ", 1)[1].split(" ", 1)[0].split("/")[0]
    return int(count) if count.isdigit() else None


def attempt(args, out, target=None, seconds_per_step=1.0):
    """Run (or resume) the run and SIGKILL it when it reaches ``target``, a point of its progress in steps
    (fractional; past ``--steps``: that far into the export, in step-equivalents).  The moment is reckoned
    from the newest progress line (or the 'training' line, or 'checkpoint (final)') plus the step time seen
    so far.  Returns rc, {stage: seconds after the spawn}, the stderr lines and whether it resumed."""
    resume = has_checkpoint(out)
    done = latest_step(out) or 0
    log_path = os.path.join(args.work, "attempt.log")
    times, anchor, logged = {}, None, []
    with open(log_path, "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(train_command(args, out, resume), cwd=ROOT, stdout=log, stderr=log)
        while proc.poll() is None:
            time.sleep(0.05)
            now = time.perf_counter() - start
            for line in _read_lines(log_path)[len(logged):]:
                logged.append(line)
                step = _logged_step(line)
                if line.startswith("training ") and "training " not in times:
                    times["training "], anchor = now, (done, now)
                elif step is not None:
                    if anchor and step > anchor[0]:
                        seconds_per_step = (now - anchor[1]) / (step - anchor[0])
                    if target is not None and step <= target:
                        anchor = (step, now)
                elif line.startswith("checkpoint (final)") or " is already at step " in line:
                    times["checkpoint (final)"], anchor = now, (args.steps, now)  # the export starts
            if target is not None and anchor and now >= anchor[1] + (target - anchor[0]) * seconds_per_step:
                proc.kill()
        rc = proc.wait()
        times["end"] = time.perf_counter() - start
    return rc, times, _read_lines(log_path), resume


PHASES = ("steps", "checkpoint write", "sampling", "export")


def kill_points(args, rng, export_steps):
    """``--kills`` (phase, point) pairs in run order: a phase drawn at random, then a point in it, in steps
    (fractional): anywhere in the steps; just after a periodic checkpoint's or a sample grid's step; or that
    far into the export (past ``--steps``, in step-equivalents of ``export_steps``)."""
    points = []
    for _ in range(args.kills):
        phase = rng.choice(PHASES)
        if phase == "steps":
            point = rng.uniform(0, args.steps)
        elif phase == "checkpoint write":
            every = args.checkpoint_every
            point = every * rng.randint(1, (args.steps - 1) // every) + rng.uniform(0, 0.5)
        elif phase == "sampling":
            every = args.sample_every
            point = every * rng.randint(1, (args.steps - 1) // every) + rng.uniform(0, 0.3)
        else:
            point = args.steps + rng.uniform(0, export_steps)
        points.append((phase, point))
    return sorted(points, key=lambda p: p[1])


def landing(out, lines):
    """Where a kill landed, from the files it left half-written and the last stderr line."""
    checkpoints = rundir.path(out, rundir.CHECKPOINTS)
    state = tf.train.get_checkpoint_state(checkpoints)
    listed = {os.path.basename(p) for p in state.all_model_checkpoint_paths} if state else set()
    if glob.glob(os.path.join(checkpoints, "*_temp*")) or glob.glob(os.path.join(checkpoints, "checkpoint.tmp*")) \
            or any(os.path.basename(f).split(".")[0] not in listed
                   for f in glob.glob(os.path.join(checkpoints, "ckpt-*.*"))):
        return "checkpoint write"
    if glob.glob(rundir.path(out, rundir.SAMPLES, "*.tmp.png")) or glob.glob(rundir.path(out, "*.tmp.gif")):
        return "sampling"
    last = lines[-1] if lines else ""
    if last.startswith("checkpoint (final)") or os.path.isdir(rundir.path(out, rundir.EXPORT + ".tmp")):
        return "export"
    if not any(line.startswith("training ") for line in lines):
        return "start-up (imports, data)"
    if last.startswith("checkpoint (periodic)"):
        return "steps (just after a checkpoint)"
    if last.startswith("["):
        return "steps"
    if last.startswith("training "):
        return "warm-up or first steps" if " steps 0.." in last else "first steps after resume"
    return "other: " + last[:60]


def unreadable_checkpoints(out):
    state = tf.train.get_checkpoint_state(rundir.path(out, rundir.CHECKPOINTS))
    paths = list(state.all_model_checkpoint_paths) if state else []
    return [os.path.basename(p) for p in paths if rundir.checkpoint_damage(p) is not None], len(paths)


def same_bytes(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def compare_runs(reference, soaked):
    """Every tensor of both final checkpoints and every sample grid, byte for byte."""
    ref_ckpt = rundir.latest_checkpoint(reference)
    soak_ckpt = rundir.latest_checkpoint(soaked)
    ref_reader, soak_reader = tf.train.load_checkpoint(ref_ckpt), tf.train.load_checkpoint(soak_ckpt)
    names = sorted(n for n in ref_reader.get_variable_to_shape_map() if n != "_CHECKPOINTABLE_OBJECT_GRAPH")
    mismatched = [n for n in names if not soak_reader.has_tensor(n) or not same_bytes(ref_reader.get_tensor(n),
                                                                                       soak_reader.get_tensor(n))]
    ref_samples = sorted(os.listdir(rundir.path(reference, rundir.SAMPLES)))
    soak_samples = sorted(os.listdir(rundir.path(soaked, rundir.SAMPLES)))
    differing = [s for s in ref_samples if s not in soak_samples or open(
        rundir.path(reference, rundir.SAMPLES, s), "rb").read() != open(rundir.path(soaked, rundir.SAMPLES, s),
                                                                        "rb").read()]
    return {"final_checkpoints": [os.path.basename(ref_ckpt), os.path.basename(soak_ckpt)],
            "tensors_compared": len(names), "tensor_mismatches": mismatched,
            "samples_compared": len(ref_samples), "sample_mismatches": differing,
            "extra_samples": sorted(set(soak_samples) - set(ref_samples)),
            "export_present": os.path.isfile(rundir.path(soaked, rundir.EXPORT, "generator.keras"))}


def markdown(result):
    m, c = result["machine"], result["comparison"]
    lines = ["# Kill soak", "",
             f"- command: `{result['command']}`", f"- date: {result['date']}",
             f"- machine: {m['cpu']}, shared with other jobs (load average {m['load_average_start'][0]:.1f} at "
             f"start); TensorFlow {m['tensorflow']}, Python {m['python']}; no GPU",
             f"- run: `{' '.join(result['train_command'])}` (reference: the same, never killed; "
             f"{result['reference_seconds']:.0f} s)",
             f"- {len(result['kills'])} SIGKILLs at points of the run drawn with seed {result['kill_seed']}: a phase "
             "at random (steps, checkpoint write, sampling, export), then a point in it (`aimed at`, in steps; past "
             "the last step: into the export), reached by the step time the attempt showed; every kill followed by "
             "a resume (a fresh start while no checkpoint existed). `landed in` is read off the files the kill "
             "left half-written and the attempt's last stderr line", "",
             "| kill | attempt began at | resumed | aimed at | s into training | landed in | last stderr line | "
             "checkpoints readable |", "|---|---|---|---|---|---|---|---|"]
    for k in result["kills"]:
        began = "step 0 (new run)" if k["from_step"] is None else f"ckpt-{k['from_step']}"
        readable = f"{k['checkpoints_listed'] - len(k['unreadable'])}/{k['checkpoints_listed']}"
        lines.append(f"| {k['kill']} | {began} | {'yes' if k['resumed'] else 'no'} | {k['aimed_at']} | "
                     f"{k['seconds']:.1f} | "
                     f"{k['landed']} | `{k['last_line'][:70].replace('|', '/')}` | {readable} |")
    landed = {}
    for k in result["kills"]:
        landed[k["landed"]] = landed.get(k["landed"], 0) + 1
    lines += ["", f"Kills: {len(result['kills'])} ({', '.join(f'{n} {w}' for w, n in sorted(landed.items()))}); "
              f"resumes: {result['resumes']}; attempts that ended by themselves before their kill: "
              f"{result['finished_early']}; final attempt exit status {result['final_rc']}.",
              f"Unreadable checkpoints after any kill: {result['unreadable_total']}.",
              f"Final checkpoint ({c['final_checkpoints'][1]}) against the reference ({c['final_checkpoints'][0]}): "
              f"{c['tensors_compared']} tensors (weights, optimizer state, step) compared byte for byte, "
              f"mismatches: {len(c['tensor_mismatches'])}; sample grids: {c['samples_compared']} compared, "
              f"mismatches: {len(c['sample_mismatches'])}; export present: {'yes' if c['export_present'] else 'no'}.",
              "", f"Result: {'PASS' if result['passed'] else 'FAIL'}."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=DATA_DIR)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--checkpoint-every", type=int, default=20)
    p.add_argument("--sample-every", type=int, default=25)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--kill-seed", type=int, default=0, help="seeds the kill moments")
    p.add_argument("--run-seed", type=int, default=0, help="the training run's --seed")
    p.add_argument("--work", default=None, help="where the two runs go (default: a temporary directory)")
    p.add_argument("--results", default=RESULTS)
    args = p.parse_args(argv)
    args.work = args.work or tempfile.mkdtemp(prefix="kill-soak-")
    os.makedirs(args.work, exist_ok=True)
    reference, soaked = os.path.join(args.work, "reference"), os.path.join(args.work, "soaked")
    result = {"machine": machine(), "command": command_line("bench.kill_soak"),
              "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "train_command": ["python"] + train_command(args, "OUT", False)[1:], "kill_seed": args.kill_seed}

    timing_path = os.path.join(args.work, "reference.json")
    if os.path.isfile(timing_path):  # a reference finished by an earlier call with this --work
        with open(timing_path) as f:
            times = json.load(f)
    else:
        rc, times, lines, _ = attempt(args, reference)
        if rc != 0 or "training " not in times or "checkpoint (final)" not in times:
            sys.exit(f"the reference run failed (exit {rc}): {lines[-1] if lines else ''}")
        with open(timing_path, "w") as f:
            json.dump(times, f)
    steps_s = times["checkpoint (final)"] - times["training "]  # warm-up, steps, checkpoints, sampling
    export_s = times["end"] - times["checkpoint (final)"]
    result.update(reference_seconds=times["end"], reference_training_seconds=steps_s, reference_export_seconds=export_s)
    print(f"reference: {times['end']:.0f} s, {steps_s:.0f} s of them training, {export_s:.0f} s export",
          file=sys.stderr)

    seconds_per_step = steps_s / args.steps
    targets = kill_points(args, random.Random(args.kill_seed), 0.8 * export_s / seconds_per_step)
    result["kill_points"] = targets
    kills, resumes, finished_early, unreadable_total = [], 0, 0, 0
    for phase, target in targets:
        done = latest_step(soaked) or 0
        rc, times, lines, resumed = attempt(args, soaked, target, seconds_per_step)
        resumes += resumed
        if rc != -9:
            finished_early += 1
            print(f"attempt ended by itself (exit {rc}) before its kill at {target:.1f}", file=sys.stderr)
            if rc == 0:
                break
            continue
        unreadable, listed = unreadable_checkpoints(soaked)
        unreadable_total += len(unreadable)
        kill = {"kill": len(kills) + 1, "from_step": done if resumed else None, "resumed": resumed,
                "aimed_at": f"{phase} ({target:.2f})",
                "seconds": times["end"] - times.get("training ", 0), "landed": landing(soaked, lines),
                "last_line": lines[-1] if lines else "", "checkpoints_listed": listed, "unreadable": unreadable,
                "latest_after": latest_step(soaked)}
        kills.append(kill)
        print(f"kill {kill['kill']}: {kill['seconds']:.1f} s into training, {kill['landed']}; latest "
              f"ckpt-{kill['latest_after']}; unreadable {unreadable}", file=sys.stderr)
    rc, _, lines, resumed = attempt(args, soaked)
    resumes += resumed
    result.update(kills=kills, resumes=resumes, finished_early=finished_early, final_rc=rc,
                  final_lines=lines[-3:], unreadable_total=unreadable_total,
                  comparison=compare_runs(reference, soaked))
    c = result["comparison"]
    result["machine"]["load_average_end"] = os.getloadavg()
    result["passed"] = (rc == 0 and unreadable_total == 0 and not c["tensor_mismatches"]
                        and not c["sample_mismatches"] and c["export_present"] and len(kills) == args.kills)
    write_report(args.results, "kill_soak", result, markdown)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
