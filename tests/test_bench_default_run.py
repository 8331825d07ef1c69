"""bench/default_run.py: the command it times, what it reads from that command's output, the report."""

import sys

import pytest

from bench import default_run
from genmnist.presets import RUN_BUDGET_MINUTES


def test_the_timed_command_is_the_default_with_only_data_out_and_seed():
    cmd = default_run.default_command("DATA", "RUN", 3)
    assert cmd[1:3] == ["-m", "genmnist.train"]
    flags = cmd[3:]
    assert flags == ["--data-dir", "DATA", "--out", "RUN", "--seed", "3"]


@pytest.mark.slow
def test_time_command_records_each_announced_checkpoint_and_the_exit(tmp_path):
    script = ("import sys\n"
              "print('[###] 10/20 d_loss 1.0', file=sys.stderr)\n"
              "print('\\ncheckpoint (periodic) at step 500: RUN/checkpoints/ckpt-500', file=sys.stderr)\n"
              "print('\\ncheckpoint (periodic) at step 1000: RUN/checkpoints/ckpt-1000', file=sys.stderr)\n"
              "print('\\ncheckpoint (final) at step 1200: RUN/checkpoints/ckpt-1200', file=sys.stderr)\n"
              "sys.exit(7)\n")
    log = tmp_path / "log"
    code, wall, cpu, checkpoints = default_run.time_command([sys.executable, "-c", script], str(log))
    assert code == 7 and cpu >= 0
    assert [step for _, step in checkpoints] == [500, 1000]  # periodic ones: the final is the run's end
    # seconds since the start, in the order announced, none after the exit (rounded as the times are)
    assert 0 <= checkpoints[0][0] <= checkpoints[1][0] <= round(wall, 1)
    assert "d_loss 1.0" in log.read_text()  # the whole output is kept


def test_the_report_judges_each_row_against_the_budget():
    metrics = {"classifier_score": 8.0, "frechet_distance": 7.0, "precision": 0.7, "recall": 0.8,
               "classes_covered": 10}

    def row(seed, minutes):
        return {"date": "d", "machine": "m", "load_start": 0.1, "load_end": 2.0, "seed": seed, "steps": 2500,
                "wall_s": minutes * 60, "cpu_s": minutes * 100, "checkpoints": [(300.0, 500)], "samples": metrics}

    text = default_run.markdown({"command": "python -m bench.default_run",
                                 "rows": [row(0, RUN_BUDGET_MINUTES - 1), row(1, RUN_BUDGET_MINUTES + 1)]})
    lines = [line for line in text.splitlines() if line.startswith("| d |")]
    assert len(lines) == 2
    assert "| yes | 5.0: 500 | 8.00 | 7.0 | 0.700 | 0.800 | 10 |" in lines[0]
    assert "| no |" in lines[1]
