"""bench/search.py: the queue's order, time accounting across a killed process, the table, and one
tiny end-to-end search that skips its finished rows and extends a run to the next budget."""

import json
import os

import pytest

from bench import search


def _queue(tmp_path, jobs, recipes=None):
    path = tmp_path / "queue.json"
    path.write_text(json.dumps({"recipes": recipes or {"a": ["--ema", "0.9"], "b": []}, "jobs": jobs}))
    return str(path)


def test_queue_expands_seeds_then_ascending_budgets_in_job_order(tmp_path):
    path = _queue(tmp_path, [{"recipe": "b", "seeds": [1, 0], "steps": [20, 10]},
                             {"recipe": "a", "seeds": [0], "steps": [5]}])
    assert [(r, s, n) for r, _, s, n in search.load_queue(path)] == \
        [("b", 1, 10), ("b", 1, 20), ("b", 0, 10), ("b", 0, 20), ("a", 0, 5)]
    assert search.load_queue(path)[-1][1] == ["--ema", "0.9"]


def test_a_recipe_without_a_precision_trains_in_float32_on_every_machine():
    assert search.train_flags([], 3)[search.train_flags([], 3).index("--precision") + 1] == "float32"
    named = search.train_flags(["--precision", "mixed_bfloat16"], 3)
    assert named.count("--precision") == 1 and named[named.index("--precision") + 1] == "mixed_bfloat16"


def test_a_killed_process_counts_its_last_recorded_time(tmp_path):
    (tmp_path / search.TIMING).write_text(json.dumps(
        {"segments": [{"to": 10, "wall": 30.0, "cpu": 50.0, "exit": 0}],
         "running": {"to": 20, "wall": 12.0, "cpu": 20.0}}))  # its process died with the session
    timing = search.Timing(str(tmp_path))
    assert timing.totals() == (42.0, 70.0, 1)
    assert json.loads((tmp_path / search.TIMING).read_text())["running"] is None
    assert timing.run(["true"], str(tmp_path / "log"), 20) == 0
    wall, cpu, killed = search.Timing(str(tmp_path)).totals()
    assert wall > 42.0 and killed == 1


def _row(recipe, seed, steps, fd, recall=0.5, diverged=False):
    row = {"recipe": recipe, "flags": ["--x"], "seed": seed, "steps": steps, "wall_s": 600.0, "cpu_s": 1200.0,
           "load": 2.5,
           "machine": "cpu", "classifier_sha256": "abcdef0123456789", "grid": f"search/{recipe}.png"}
    if diverged:
        return {**row, "diverged": True}
    metrics = {"classifier_score": 8.0, "frechet_distance": fd, "precision": 0.7, "recall": recall,
               "classes_covered": 10, "collapsed": False}
    return {**row, "precision": "float32", "num": 10000, "samples": metrics}


def test_table_lists_rows_and_means_over_seeds():
    rows = [_row("r", 0, 100, 4.0), _row("r", 1, 100, 6.0), _row("q", 0, 100, 1.0, diverged=True)]
    ceiling = {"classifier_score": 9.7, "frechet_distance": 0.4, "precision": 0.86, "recall": 0.87,
               "classes_covered": 10}
    table = search.markdown(rows, ceiling, search.QUEUE)
    assert "sha256 abcdef012345" in table and "diverged" in table
    assert "scored on 10000 samples" in table
    assert "scored on 150 or 10000 samples" in search.markdown([*rows, {**_row("r", 2, 100, 5.0), "num": 150}],
                                                               ceiling, search.QUEUE)
    assert "| r | 100 | 2 | 10.0 | 8.00 | 5.0 | 0.700 | 0.500 | 10 |" in table
    assert "| r | 0 | 100 | float32 | 10.0 | 20.0 | 2.5 | 8.00 | 4.0 |" in table


@pytest.mark.slow
def test_search_runs_the_queue_once_and_extends_a_run(tmp_path, capsys):
    from conftest import write_idx_dir
    data = tmp_path / "mnist"
    write_idx_dir(data, n=256, seed=0)
    write_idx_dir(data, n=200, seed=1, prefix="t10k")
    fast = ["--batch-size", "8", "--checkpoint-every", "1"]
    queue = _queue(tmp_path, [{"recipe": "tiny", "seeds": [0], "steps": [2, 3]}], {"tiny": fast})
    argv = ["--queue", queue, "--data-dir", str(data), "--runs", str(tmp_path / "runs"),
            "--results", str(tmp_path / "results"), "--num", "150"]
    assert search.main(argv) == 0
    rows = search.read_rows(str(tmp_path / "results"))
    assert [(r["recipe"], r["seed"], r["steps"]) for r in rows] == [("tiny", 0, 2), ("tiny", 0, 3)]
    assert rows[1]["wall_s"] > rows[0]["wall_s"] > 0 and rows[0]["samples"]["num_images"] == 150
    assert rows[0]["precision"] == "float32"  # the recipe names none: not what auto picks here
    assert os.path.isfile(tmp_path / "results" / rows[0]["grid"])
    assert "| tiny | 0 | 3 |" in (tmp_path / "results" / search.TABLE).read_text()
    timing = json.loads((tmp_path / "runs" / "tiny-seed0" / search.TIMING).read_text())
    assert [s["to"] for s in timing["segments"]] == [2, 3]  # the second budget resumed the same run
    capsys.readouterr()
    assert search.main(argv) == 0  # nothing left: no training
    assert "0 new rows" in capsys.readouterr().out and len(search.read_rows(str(tmp_path / "results"))) == 2
    # an edited recipe under the same name does not extend the old run
    queue = _queue(tmp_path, [{"recipe": "tiny", "seeds": [0], "steps": [4]}], {"tiny": fast + ["--ema", "0.9"]})
    assert search.main(["--queue", queue, *argv[2:]]) == 0
    assert "other flags" in capsys.readouterr().out
