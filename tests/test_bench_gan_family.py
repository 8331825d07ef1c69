"""bench/gan_family.py --collect: parts run on several machines merge into one table, machines kept."""

import json

from bench import common, gan_family


def _write(path, machine, rows):
    path.write_text(json.dumps({"command": "x", "machine": machine, "rows": rows}))
    return str(path)


def _row(loss, seed, score, **extra):
    return {"model": "dcgan", "loss": loss, "seed": seed, "steps": 500, "exit_code": 0,
            "train_seconds": 10.0, "classifier_score": score, **extra}


def test_collect_merges_files_later_ones_win_and_rows_keep_their_machine(tmp_path):
    first = _write(tmp_path / "a.json", "box A", [_row("hinge", 0, 4.0), _row("lsgan", 0, 3.0)])
    second = _write(tmp_path / "b.json", "box B", [_row("hinge", 0, 5.0), _row("hinge", 1, 6.0, machine="box C")])
    rows = {(r["loss"], r["seed"]): r for r in gan_family.collect([first, second])}
    assert set(rows) == {("hinge", 0), ("lsgan", 0), ("hinge", 1)}
    assert rows[("hinge", 0)]["classifier_score"] == 5.0 and rows[("hinge", 0)]["machine"] == "box B"
    assert rows[("lsgan", 0)]["machine"] == "box A"
    assert rows[("hinge", 1)]["machine"] == "box C"  # a row's own machine beats its file's


def test_the_table_ends_with_the_notes_file(tmp_path):
    import argparse
    notes = tmp_path / "notes.md"
    notes.write_text("Trained on box A.\n")
    args = argparse.Namespace(results=str(tmp_path), num=10, notes=str(notes))
    ceiling = {k: 1.0 for k in gan_family.METRICS}
    row = {k: 2.0 for k in gan_family.METRICS}
    rows = [_row("hinge", 0, 4.0, failure="", **row),  # recorded before rows said how they sampled
            _row("hinge", 1, 4.0, failure="", sampling="recomputed", **row),
            {**_row("hinge", 0, 4.0, failure="", **row), "model": "wgan"}]
    gan_family.write_results(args, rows, ceiling)
    text = (tmp_path / "gan_family.md").read_text()
    assert text.rstrip().endswith("| | |\n\nTrained on box A.")
    assert "| dcgan | hinge | 500 | 2 | moving, recomputed | " in text
    assert "| wgan | hinge | 500 | 1 | none | " in text


def test_a_model_s_rows_are_averaged_in_the_sampling_mode_every_run_was_scored_in(tmp_path):
    import argparse
    args = argparse.Namespace(results=str(tmp_path), num=10, notes=None)
    ceiling = {k: 1.0 for k in gan_family.METRICS}
    metrics = lambda score: {k: score for k in gan_family.METRICS}  # noqa: E731
    rows = [_row("hinge", 0, 4.0, failure="", **metrics(4.0)),  # old row: moving statistics only
            {**_row("hinge", 1, 9.0, failure="", sampling="recomputed", **metrics(9.0)),
             "other_sampling": {"bn-moving": metrics(6.0), "bn-batch": metrics(7.0)}}]
    gan_family.write_results(args, rows, ceiling)
    text = (tmp_path / "gan_family.md").read_text()
    # seed 1 enters with its moving-statistics score (6), not its own recomputed one (9)
    assert "| dcgan | hinge | 500 | 2 | moving | 5.000 (4.000..6.000) | " in text
    assert text.count("| 10 / 10 | none |") == 1  # wall seconds per seed, not a mean across machines
    assert gan_family.table_mode([rows[1]]) == "recomputed"


def test_spectral_norm_rows_are_their_own_runs_and_table_rows(tmp_path):
    import argparse
    plain, normed = _row("hinge", 0, 4.0, failure=""), _row("hinge", 0, 6.0, failure="", spectral_norm=True)
    rows = gan_family.collect([_write(tmp_path / "a.json", "box A", [plain, normed])])
    assert len(rows) == 2  # the same (model, loss, seed, steps), not merged
    args = argparse.Namespace(results=str(tmp_path), num=10, notes=None)
    metrics = {k: 1.0 for k in gan_family.METRICS if k != "classifier_score"}
    gan_family.write_results(args, [{**r, **metrics} for r in rows], {k: 1.0 for k in gan_family.METRICS})
    text = (tmp_path / "gan_family.md").read_text()
    assert "| dcgan | hinge | 500 | 1 | moving | 4.000 | " in text
    assert "| dcgan | hinge + spectral norm | 500 | 1 | moving | 6.000 | " in text


def test_a_run_killed_part_way_is_resumed_and_a_finished_one_is_not_retrained(tmp_path, monkeypatch):
    import subprocess
    calls = []
    monkeypatch.setattr(common.subprocess, "run",
                        lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    run = tmp_path / "dcgan-hinge-seed0-500"
    assert gan_family.train(str(run), "dcgan", "hinge", 0, 500, "data")[1] is not None  # new: timed
    assert "--resume" not in calls[-1]
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "ckpt-300.index").write_text("")
    (run / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-300"\n')  # what the manager records
    assert gan_family.train(str(run), "dcgan", "hinge", 0, 500, "data", spectral_norm=True) == (0, None)
    assert "--resume" in calls[-1] and "--spectral-norm" in calls[-1]
    (run / "checkpoints" / "ckpt-500.index").write_text("")
    assert gan_family.train(str(run), "dcgan", "hinge", 0, 500, "data") == (0, None) and len(calls) == 2
