"""bench/quality.py: the time-to-legacy-quality line picks the first budget that matches both metrics;
bench/common.train resumes only what can be resumed."""

import os

from bench import common, quality


def _row(preset, steps, score, fd, seconds, sampling="preset"):
    return {"preset": preset, "seed": 0, "steps": steps, "sampling": sampling, "train_seconds": seconds,
            "classifier_score": score, "frechet_distance": fd, "precision": 0.5, "recall": 0.1,
            "class_kl_uniform": 0.1, "classes_covered": 10}


def test_time_to_quality_needs_both_metrics_at_the_same_budget():
    rows = [_row("legacy", 500, 2.0, 200.0, 100.0), _row("legacy", 2000, 6.0, 50.0, 400.0),
            _row("default", 500, 7.0, 60.0, 110.0),     # score reached, FD not yet
            _row("default", 1000, 6.5, 45.0, 200.0),    # both: the answer
            _row("default", 2000, 8.0, 30.0, 420.0),
            _row("default", 1000, 9.0, 1.0, 200.0, sampling="bn-batch")]  # other sampling: ignored
    lines = quality.time_to_quality(quality._summary(rows), ["legacy", "default"])
    assert "score >= 6.000 and FD <= 50.000" in lines[1] and "2000 steps, 400 s" in lines[1]
    assert lines[2] == "- default: by 1000 steps, 200 s = 0.50x legacy's time"


def test_time_to_quality_not_reached_and_no_baseline():
    rows = [_row("legacy", 2000, 6.0, 50.0, 400.0), _row("default", 2000, 5.0, 40.0, 400.0)]
    assert quality.time_to_quality(quality._summary(rows), ["legacy", "default"])[-1] == \
        "- default: not within the budgets run"
    assert quality.time_to_quality(quality._summary(rows[1:]), ["default"]) == []


def test_each_preset_is_scored_in_its_own_sampling_mode_first_then_the_others():
    from genmnist.presets import PRESETS
    assert common.sampling_modes(PRESETS["legacy"]) == ["batch", "moving", "recomputed"]
    assert common.sampling_modes(PRESETS["default"]) == ["recomputed", "moving", "batch"]
    assert common.sampling_modes(PRESETS["default"].replace(sampling_stats="moving")) == \
        ["moving", "recomputed", "batch"]


def test_a_rebuilt_table_keeps_its_hand_written_notes_and_says_rows_were_collected(tmp_path):
    import argparse
    notes = tmp_path / "notes.md"
    notes.write_text("## Where the rows come from\n\nlegacy seed 1: the lent machine\n")
    rows = [_row("legacy", 500, 2.0, 200.0, 100.0), _row("default", 500, 3.0, 150.0, 90.0)]
    ceiling = {k: 1.0 for k in quality.METRICS}
    args = argparse.Namespace(results=str(tmp_path), tag="t", num=10, collect=["x.jsonl"], notes=str(notes),
                              presets=["legacy", "default"])
    quality.write_results(args, rows, ceiling)
    text = (tmp_path / "t.md").read_text()
    assert text.rstrip().endswith("## Where the rows come from\n\nlegacy seed 1: the lent machine")
    assert "Machine: collected on" in text
    args.notes, args.collect = None, None
    quality.write_results(args, rows, ceiling)
    text = (tmp_path / "t.md").read_text()
    assert "Where the rows come from" not in text and "collected on" not in text


def test_time_to_quality_warns_when_the_rows_come_from_several_machines():
    rows = [_row("legacy", 2000, 6.0, 50.0, 400.0), _row("default", 1000, 7.0, 40.0, 100.0)]
    summary = quality._summary(rows)
    assert not any("Caution" in line for line in quality.time_to_quality(summary, ["legacy", "default"],
                                                                           machines=["a", "a"]))
    for machines in (["a", "b"], ["a", None]):
        assert "compare machines" in quality.time_to_quality(summary, ["legacy", "default"], machines=machines)[-1]


def test_train_resumes_only_a_run_that_saved_a_checkpoint(tmp_path, monkeypatch):
    """A run killed before its first checkpoint has a checkpoints/ folder but nothing to resume: start afresh."""
    import tensorflow as tf

    from genmnist import rundir
    calls = []
    monkeypatch.setattr(common, "run_module", lambda module, args, *rest, **kw: calls.append(args) or (0, 1.0))
    run = str(tmp_path / "run")
    os.makedirs(rundir.path(run, rundir.CHECKPOINTS))
    common.train(run, 10, "data")
    assert "--resume" not in calls[-1]
    tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)), rundir.path(run, rundir.CHECKPOINTS), 1).save()
    common.train(run, 10, "data")
    assert "--resume" in calls[-1]
