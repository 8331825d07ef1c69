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


def test_disk_tells_weights_from_adam_state_by_key():
    from bench.disk import _part
    weights = {"g_optimizer/_trainable_variables/3/.ATTRIBUTES/VARIABLE_VALUE"}
    assert [_part(k, weights) for k in (*weights, "g_optimizer/_variables/9/.ATTRIBUTES/VARIABLE_VALUE",
                                        "d_optimizer/_variables/1/.ATTRIBUTES/VARIABLE_VALUE",
                                        "generator/layer_with_weights-4/moving_mean/.ATTRIBUTES/VARIABLE_VALUE",
                                        "ema_generator/x", "step/.ATTRIBUTES/VARIABLE_VALUE")] == [
        "generator weights", "generator Adam state", "discriminator Adam state", "generator weights",
        "generator weight average (--ema)", "rng, step, counters"]
