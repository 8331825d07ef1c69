"""What every benchmark records about how it was started."""

import os
import sys

from bench import common


def test_a_recorded_command_names_no_directory_of_the_machine(monkeypatch):
    beside = os.path.join(os.path.dirname(common.ROOT), "shared", "data", "mnist")
    inside = os.path.join(common.ROOT, "bench", "results")
    monkeypatch.setattr(sys, "argv", ["bench/speed.py", "--data-dir", beside, f"--results={inside}",
                                      "--work", "/tmp/w1", "--steps", "3"])
    assert common.command_line("bench.speed") == ("python -m bench.speed --data-dir ../shared/data/mnist "
                                                  "--results=bench/results --work /tmp/w1 --steps 3")
