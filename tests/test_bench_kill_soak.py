"""bench/kill_soak.py: where a kill landed is read off the files it left, and the report renders."""

import os

import tensorflow as tf

from bench import common
from bench import kill_soak as soak


def run_with_one_checkpoint(tmp_path):
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=tf.Variable(1)), str(tmp_path / "checkpoints"), 3)
    manager.save(checkpoint_number=20)
    return tmp_path


def test_landing_is_read_off_the_files_a_kill_leaves(tmp_path):
    run = run_with_one_checkpoint(tmp_path)
    progress = ["training run: preset default, 60000 images, batch 128, steps 0..300, seed 0",
                "[#.....] 45/300 d_loss 1.2 g_loss 0.8"]
    assert soak.landing(str(run), progress) == "steps"
    assert soak.landing(str(run), progress[:1]) == "warm-up or first steps"
    assert soak.landing(str(run), []) == "start-up (imports, data)"
    os.makedirs(run / "samples")
    (run / "samples" / "step_000050.png.tmp.png").write_bytes(b"half")
    assert soak.landing(str(run), progress) == "sampling"
    os.makedirs(run / "checkpoints" / "ckpt-40_temp")
    assert soak.landing(str(run), progress) == "checkpoint write"
    os.rmdir(run / "checkpoints" / "ckpt-40_temp")
    (run / "checkpoints" / "ckpt-40.index").write_bytes(b"renamed, not yet recorded")
    assert soak.landing(str(run), progress) == "checkpoint write"
    os.remove(run / "checkpoints" / "ckpt-40.index")
    os.remove(run / "samples" / "step_000050.png.tmp.png")
    assert soak.landing(str(run), progress + ["checkpoint (final) at step 300: x/ckpt-300"]) == "export"


def test_markdown_report_renders_a_row_per_kill(tmp_path):
    run = run_with_one_checkpoint(tmp_path)
    assert soak.unreadable_checkpoints(str(run)) == ([], 1)
    kills = [{"kill": i + 1, "from_step": None if i == 0 else 20, "resumed": i > 0, "seconds": 9.5,
              "aimed_at": "steps (45.20)",
              "landed": "steps", "last_line": "[##] 45/300 | x", "checkpoints_listed": 1, "unreadable": [],
              "latest_after": 20} for i in range(3)]
    result = {"machine": common.machine(),
              "command": "python bench/kill_soak.py", "date": "today", "train_command": ["python", "-m", "x"],
              "reference_seconds": 100.0, "kill_seed": 0, "kills": kills, "resumes": 3, "finished_early": 0,
              "final_rc": 0, "unreadable_total": 0, "passed": True,
              "comparison": {"final_checkpoints": ["ckpt-300", "ckpt-300"], "tensors_compared": 60,
                             "tensor_mismatches": [], "samples_compared": 14, "sample_mismatches": [],
                             "export_present": True}}
    text = soak.markdown(result)
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 3 and "step 0 (new run)" in rows[0] and "ckpt-20" in rows[1]
    header = [line for line in text.splitlines() if line.startswith("| kill")][0]
    assert all(row.count("|") == header.count("|") for row in rows)  # a '|' in a stderr line is escaped
    assert f"- machine: {common.MACHINE}," in text  # the CPU line every results file names, flags included
    assert "mismatches: 0" in text and "Result: PASS" in text


def test_kill_points_are_in_run_order_and_inside_their_phase():
    import argparse
    import random

    args = argparse.Namespace(kills=40, steps=300, checkpoint_every=20, sample_every=25)
    points = soak.kill_points(args, random.Random(0), export_steps=6.0)
    assert len(points) == 40 and [p for _, p in points] == sorted(p for _, p in points)
    assert {phase for phase, _ in points} == set(soak.PHASES)
    for phase, point in points:
        if phase == "checkpoint write":
            assert point % 20 < 0.5 and 20 <= point < 300
        elif phase == "sampling":
            assert point % 25 < 0.3 and 25 <= point < 300
        elif phase == "export":
            assert 300 <= point <= 306
