"""bench/default_run.py: the command it times, what it reads from that command's output, the report."""

import os
import sys

import numpy as np
import pytest

from bench import default_run
from genmnist.presets import RUN_BUDGET_MINUTES


def test_the_timed_command_is_the_default_with_only_data_out_and_seed():
    cmd = default_run.default_command("DATA", "RUN", 3)
    assert cmd[1:3] == ["-m", "genmnist.train"]
    flags = cmd[3:]
    assert flags == ["--data-dir", "DATA", "--out", "RUN", "--seed", "3"]
    # A candidate length adds --steps and nothing else.
    assert default_run.default_command("DATA", "RUN", 3, steps=8000)[3:] == [*flags, "--steps", "8000"]


@pytest.mark.slow
def test_time_command_records_each_announced_checkpoint_keeps_it_and_the_exit(tmp_path):
    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    # each announced checkpoint's files exist when announced; the run deletes the older one afterwards
    script = ("import os, sys\n"
              f"run = {str(run)!r}\n"
              "def save(step):\n"
              "    for ext in ('index', 'data-00000-of-00001'):\n"
              "        open(os.path.join(run, f'ckpt-{step}.{ext}'), 'w').write(str(step))\n"
              "print('[###] 10/20 d_loss 1.0', file=sys.stderr)\n"
              "save(500)\n"
              "print(f'\\ncheckpoint (periodic) at step 500: {run}/ckpt-500', file=sys.stderr, flush=True)\n"
              "save(1000)\n"
              "print(f'\\ncheckpoint (periodic) at step 1000: {run}/ckpt-1000', file=sys.stderr, flush=True)\n"
              "import time; time.sleep(0.5)\n"
              "for ext in ('index', 'data-00000-of-00001'):\n"
              "    os.remove(os.path.join(run, f'ckpt-500.{ext}'))\n"
              "print(f'\\ncheckpoint (final) at step 1200: {run}/ckpt-1200', file=sys.stderr)\n"
              "sys.exit(7)\n")
    log, kept = tmp_path / "log", tmp_path / "kept"
    code, wall, cpu, checkpoints = default_run.time_command([sys.executable, "-c", script], str(log), str(kept))
    assert code == 7 and cpu >= 0
    assert [step for _, step in checkpoints] == [500, 1000]  # periodic ones: the final is the run's end
    assert sorted(p.name for p in kept.iterdir()) == [f"ckpt-{n}.{ext}" for n in (1000, 500)
                                                       for ext in ("data-00000-of-00001", "index")]
    assert (kept / "ckpt-500.index").read_text() == "500"  # outlives the run's own deletion
    # seconds since the start, in the order announced, none after the exit (rounded as the times are)
    assert 0 <= checkpoints[0][0] <= checkpoints[1][0] <= round(wall, 1)
    assert "d_loss 1.0" in log.read_text()  # the whole output is kept


def test_the_report_judges_each_row_against_the_budget():
    metrics = {"classifier_score": 8.0, "frechet_distance": 7.0, "precision": 0.7, "recall": 0.8,
               "classes_covered": 10}

    def row(seed, minutes):
        return {"date": "d", "machine": "m", "load_start": 0.1, "load_end": 2.0, "seed": seed,
                "r1_weight": 10.0, "steps": 2500, "lr_decay_steps": 0, "precision": "float32",
                "wall_s": minutes * 60, "cpu_s": minutes * 100,
                "checkpoints": [(300.0, 500)], "samples": metrics}

    given = {**row(2, RUN_BUDGET_MINUTES - 1), "steps_given": True}
    text = default_run.markdown({"command": "python -m bench.default_run",
                                 "rows": [row(0, RUN_BUDGET_MINUTES - 1), row(1, RUN_BUDGET_MINUTES + 1), given]})
    lines = [line for line in text.splitlines() if line.startswith("| d |")]
    assert len(lines) == 3
    assert "| yes | 5.0: 500 | 8.00 | 7.0 | 0.700 | 0.800 | 10 | | |" in lines[0]
    assert "| 0 | nonsaturating | 10 | 2500 | 4e-4 / 8e-4 | none | 0.999 | float32 |" in lines[0]
    assert "| no |" in lines[1]
    assert "| 2 | nonsaturating | 10 | 2500 --steps | 4e-4 / 8e-4 | none |" in lines[2]  # a candidate length


def test_the_report_shows_the_early_checkpoint_and_it_is_the_one_nearest_five_minutes():
    assert default_run.nearest_early([(230.0, 1000), (340.0, 1500), (450.0, 2000)]) == (340.0, 1500)
    assert default_run.nearest_early([(250.0, 500), (520.0, 1000)]) == (250.0, 500)
    assert default_run.nearest_early([]) is None
    metrics = {"classifier_score": 8.0, "frechet_distance": 7.0, "precision": 0.7, "recall": 0.8,
               "classes_covered": 10}
    early = {"seconds": 304.7, "step": 1500, "samples": {**metrics, "frechet_distance": 12.34}}
    row = {"date": "d", "machine": "m", "load_start": 0.1, "load_end": 2.0, "seed": 0, "r1_weight": 5.0, "steps": 2500,
           "lr_decay_steps": 6000, "precision": "mixed_bfloat16", "wall_s": 480, "cpu_s": 800,
           "checkpoints": [(304.7, 1500)], "samples": metrics, "early": early}
    text = default_run.markdown({"command": "python -m bench.default_run", "rows": [row]})
    line = [line for line in text.splitlines() if line.startswith("| d |")][0]
    header = [line for line in text.splitlines() if line.startswith("| date")][0]
    assert line.count("|") == header.count("|")
    assert line.endswith("| 5.1: 1500 | 8.00 / 12.3 / 0.700 / 0.800 / 10 | | |  |")  # no middle scored, no grid
    # from before rows recorded lazy R1, R1's share of the batch, the rates, beta2 and the loss: the default's then
    assert "| nonsaturating | 5 | 2500 | 4e-4 / 8e-4 | 6000 | 0.999 | mixed_bfloat16 | 8.0 |" in line
    lazy = default_run.markdown({"command": "c", "rows": [{**row, "r1_every": 4, "beta2": 0.99, "loss": "lsgan",
                                                           "learning_rate": 5e-4, "d_learning_rate": 1e-3}]})
    assert "| lsgan | 5, every 4 | 2500 | 5e-4 / 1e-3 | 6000 | 0.99 | mixed_bfloat16 | 8.0 |" in lazy
    half = default_run.markdown({"command": "c", "rows": [{**row, "penalty_fraction": 0.5, "loss": "lsgan"}]})
    assert "| lsgan | 5, on 0.5 of the batch | 2500 |" in half


def test_the_middle_is_the_checkpoint_nearest_half_the_run_and_the_end_must_hold_against_it():
    checkpoints = [(100.0, 500), (200.0, 1000), (300.0, 1500), (400.0, 2000)]
    assert default_run.nearest_middle(checkpoints, 4000) == (400.0, 2000)
    assert default_run.nearest_middle(checkpoints, 2500) in ((200.0, 1000), (300.0, 1500))
    assert default_run.nearest_middle([], 4000) is None
    end = {"classifier_score": 8.5, "frechet_distance": 2.0, "precision": 0.77, "recall": 0.8, "classes_covered": 10}
    row = {"date": "d", "machine": "m", "load_start": 0.1, "load_end": 2.0, "seed": 0, "r1_weight": 5.0,
           "steps": 4000, "lr_decay_steps": 0, "precision": "float32", "wall_s": 480, "cpu_s": 800,
           "checkpoints": checkpoints, "samples": end,
           "middle": {"step": 2000, "samples": {**end, "frechet_distance": 3.4, "recall": 0.78}}}
    assert default_run.end_holds(row) is True
    line = [line for line in default_run.markdown({"command": "c", "rows": [row]}).splitlines()
            if line.startswith("| d |")][0]
    assert line.endswith("| 2000: 8.50 / 3.4 / 0.770 / 0.780 / 10 | yes |  |")
    with_grid = default_run.markdown({"command": "c", "rows": [{**row, "grid": "default_run/g.png"}]})
    assert with_grid.splitlines()[-1].endswith("| yes | [grid](default_run/g.png) |")
    for worse in ({"frechet_distance": 1.9}, {"recall": 0.81}, {"classes_covered": 9}):
        middle_better = {**row, "middle": {"step": 2000, "samples": {**end, **worse}}}
        if "classes_covered" in worse:
            middle_better = {**row, "samples": {**end, "classes_covered": 9},
                             "middle": {"step": 2000, "samples": end}}
        assert default_run.end_holds(middle_better) is False, worse
    assert default_run.end_holds({**row, "middle": None}) is None


def test_a_checkpoint_that_is_both_early_and_middle_is_scored_once(monkeypatch):
    scored = []
    monkeypatch.setattr(default_run, "score_kept",
                        lambda run_dir, step, reference, num: scored.append(step) or {"samples": {"step": step}})
    checkpoints = [(150.0, 1000), (300.0, 2000), (450.0, 3000), (600.0, 4000)]
    early, middle = default_run.score_early_and_middle("RUN", checkpoints, 4000, None, 10)
    assert (early["step"], early["seconds"], middle["step"]) == (2000, 300.0, 2000)
    assert early["samples"] == middle["samples"] == {"step": 2000} and scored == [2000]
    early, middle = default_run.score_early_and_middle("RUN", checkpoints[:1], 4000, None, 10)
    assert early["step"] == 1000 and middle["step"] == 1000 and scored == [2000, 1000]
    assert default_run.score_early_and_middle("RUN", [], 4000, None, 10) == (None, None)


@pytest.mark.slow
def test_a_kept_checkpoint_is_scored_from_a_runs_folder_given_relative(tmp_path, idx_dir, monkeypatch):
    """--runs ../default-runs: the scored copy's index must name the kept checkpoint wherever the bench runs."""
    from bench import search
    from genmnist import trained

    from conftest import train_tiny
    assert train_tiny(tmp_path / "runs" / "seed0", idx_dir, "--keep-checkpoints", "0", "--no-export", steps=8) == 0
    kept = tmp_path / "runs" / f"seed0-{default_run.KEPT}"
    kept.mkdir()
    for name in (tmp_path / "runs" / "seed0" / "checkpoints").glob("ckpt-4.*"):
        (kept / name.name).write_bytes(name.read_bytes())
    restored = []
    monkeypatch.setattr(search, "score", lambda run_dir, step, reference, num: (
        restored.append(trained.restore_generator(run_dir, step=step)), None, None))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    default_run.score_kept(f"..{os.sep}runs{os.sep}seed0", 4, None, 10)

    def kernel(generator):
        return generator.get_layer("g_1").kernel.numpy()
    [(scored, _)] = restored  # the kept step 4, not the run's latest
    at_4, at_8 = (trained.restore_generator(str(tmp_path / "runs" / "seed0"), step=step)[0] for step in (4, 8))
    np.testing.assert_array_equal(kernel(scored), kernel(at_4))
    assert not np.array_equal(kernel(at_4), kernel(at_8))


def test_a_runs_folder_not_there_yet_is_made(tmp_path, monkeypatch):
    """--runs NEW: the first run's log goes into a folder the bench makes (it crashed opening the log)."""
    from bench import common
    monkeypatch.setattr(common, "scoring_reference", lambda data_dir, num: None)
    monkeypatch.setattr(default_run, "default_command", lambda *args: [sys.executable, "-c", "raise SystemExit(5)"])
    runs = tmp_path / "not" / "there"
    with pytest.raises(SystemExit) as exit_info:
        default_run.main(["--runs", str(runs), "--seeds", "0", "--results", str(tmp_path / "results")])
    assert "exited 5" in str(exit_info.value) and (runs / "default-seed0.log").is_file()
