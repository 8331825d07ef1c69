"""Every command answers --help before TensorFlow loads, and prints none of TensorFlow's start-up lines."""

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "pyproject.toml")) as f:  # the console scripts: "genmnist.train:main", ...
    SCRIPTS = tuple(re.findall(r'^genmnist-\w+ = "([\w.]+:\w+)"$', f.read(), re.M))
COMMANDS = tuple(s.split(":")[0] for s in SCRIPTS) + ("legacy_v1.parity", "legacy_v1.train", "legacy_v1.predict")

# Each command's --help as `python -m` runs it, then each console script's (import, then call): its
# text and whether TensorFlow was imported by then; the first to import TensorFlow ends the list.
_HELP = """
import contextlib, importlib, io, json, runpy, sys
out = {}
for entry in sys.argv[1:]:
    text = io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
        if ":" in entry:
            module, function = entry.split(":")
            getattr(importlib.import_module(module), function)(["--help"])
        else:
            sys.argv[1:] = ["--help"]
            runpy.run_module(entry, run_name="__main__", alter_sys=True)
    out[entry] = {"tensorflow": "tensorflow" in sys.modules, "help": text.getvalue()}
    if "tensorflow" in sys.modules:
        break
print(json.dumps(out))
"""


@pytest.mark.slow
def test_help_of_every_command_imports_no_tensorflow():
    done = subprocess.run([sys.executable, "-c", _HELP, *COMMANDS, *SCRIPTS], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert {k: v["tensorflow"] for k, v in results.items()} == dict.fromkeys(COMMANDS + SCRIPTS, False)
    for key, result in results.items():
        assert result["help"].startswith("usage: "), key
        assert "(default: None)" not in result["help"], key


@pytest.mark.slow
def test_a_command_that_loads_tensorflow_prints_only_its_own_line(tmp_path):
    """The error comes after TensorFlow's import (sample checks --run once it is loaded), so any
    start-up line TensorFlow writes would stand before it."""
    # As a user runs it: the suite's conftest turns oneDNN off, which also silences its start-up note.
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    done = subprocess.run([sys.executable, "-m", "genmnist.sample", "--run", str(tmp_path / "none"),
                           "--out", str(tmp_path / "x.npz")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"genmnist.sample: error: run directory {tmp_path / 'none'} does not exist"]


def test_the_help_defaults_say_something(capsys):
    from genmnist import train
    from genmnist.presets import MODELS
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    help_text = capsys.readouterr().out
    assert "(default: None)" not in help_text and "(default: False)" not in help_text
    flat = " ".join(help_text.split())
    assert "--pixel-range LOW,HIGH" in help_text and "(default: 2000)" in flat  # --eval-num's
    for model, presets in MODELS.items():  # --steps and --batch-size read their defaults from the presets
        for name, preset in presets.items():
            assert f"{model} {name}: {preset.run_steps}" in flat and f"{model} {name}: {preset.run_batch_size}" in flat
    d_rate = flat.split("--d-learning-rate D_LEARNING_RATE ")[1].split(" --")[0]  # D's rate is the preset's too
    assert f"dcgan default: {MODELS['dcgan']['default'].d_learning_rate:g}" in d_rate


def test_import_tensorflow_drops_only_the_early_info_lines():
    import genmnist
    lines = ["WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
             "I0000 00:00:1796405235.475452    4258 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
             "GPU will not be used.",
             "I0000 00:00:1796591087.700655   10834 port.cc:153] oneDNN custom operations are on. You may see "
             "slightly different numerical results due to floating-point round-off errors from different "
             "computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
             "E0000 00:00:1796405235.475452    4258 cuda_platform.cc:51] failed call to cuInit: UNKNOWN ERROR (303)",
             "Traceback (most recent call last):"]
    assert [line for line in lines if not genmnist._EARLY_INFO.match(line)] == lines[3:]
