"""What every benchmark records about how it was started."""

import os
import sys

from bench import common


def test_a_recorded_command_names_no_directory_of_the_machine(monkeypatch):
    beside = os.path.join(os.path.dirname(common.ROOT), "shared", "data", "mnist")
    inside = os.path.join(common.ROOT, "bench", "results")
    far = os.path.normpath(os.path.join(common.ROOT, os.pardir, os.pardir, "w1"))  # wherever the checkout is
    monkeypatch.setattr(sys, "argv", ["bench/speed.py", "--data-dir", beside, f"--results={inside}",
                                      "--work", far, "--steps", "3"])
    assert common.command_line("bench.speed") == ("python -m bench.speed --data-dir ../shared/data/mnist "
                                                  f"--results=bench/results --work {far} --steps 3")


def test_disk_tells_weights_from_adam_state_by_key():
    from bench.disk import _part
    weights = {"g_optimizer/_trainable_variables/3/.ATTRIBUTES/VARIABLE_VALUE"}
    assert [_part(k, weights) for k in (*weights, "g_optimizer/_variables/9/.ATTRIBUTES/VARIABLE_VALUE",
                                        "d_optimizer/_variables/1/.ATTRIBUTES/VARIABLE_VALUE",
                                        "generator/layer_with_weights-4/moving_mean/.ATTRIBUTES/VARIABLE_VALUE",
                                        "ema_generator/x", "step/.ATTRIBUTES/VARIABLE_VALUE")] == [
        "generator weights", "generator Adam state", "discriminator Adam state", "generator weights",
        "generator weight average (--ema)", "rng, step, counters"]
