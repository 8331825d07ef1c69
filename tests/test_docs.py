"""Every name README.md and docs/*.md give for the code exists: modules, functions, settings, flags, files."""

import contextlib
import dataclasses
import glob
import importlib
import io
import os
import re
import runpy
import sys

import pytest

from genmnist.presets import MODELS, Preset, rate_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
COMMANDS = ("genmnist.train", "genmnist.sample", "genmnist.evaluate", "genmnist.convert", "legacy_v1.parity",
            "legacy_v1.train", "legacy_v1.predict", "bench.speed", "bench.process_speed", "bench.quality",
            "bench.gan_family", "bench.statistical_parity", "bench.kill_soak", "bench.search", "bench.disk",
            "bench.default_run",
            "genmnist.classifier")
# name=value settings the docs quote from the legacy TF1 code, which is not in this repository
LEGACY_SETTINGS = {"epsilon", "train_epochs"}


def _spans(path):
    with open(path) as f:
        return re.findall(r"`([^`\n]+)`", f.read())


def _resolve(dotted):
    """The object ``dotted`` names: the longest importable module prefix, then attributes or dataclass fields."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            fields = {f.name for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else set()
            if name in fields:
                return name
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


def _option_strings():
    """Every long option of the repository's commands, read from their --help."""
    flags = set()
    for module in COMMANDS:
        text, argv = io.StringIO(), sys.argv
        sys.argv = [module, "--help"]
        try:
            with contextlib.redirect_stdout(text), pytest.raises(SystemExit):
                runpy.run_module(module, run_name="__main__")
        finally:
            sys.argv = argv
        flags |= set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text.getvalue()))
    return flags


@pytest.mark.parametrize("doc", DOCS, ids=os.path.basename)
def test_code_names_in_the_docs_exist(doc):
    missing = []
    for span in _spans(doc):
        for dotted in re.findall(r"\b(?:genmnist|legacy_v1|bench)(?:\.[A-Za-z_]\w*)+", span):
            if not any(part.isupper() for part in dotted.split(".")[1:]):  # bench.NAME is a placeholder
                try:
                    _resolve(dotted)
                except (ImportError, AttributeError):
                    missing.append(dotted)
        for path in re.findall(r"^(?:genmnist|legacy_v1|bench|docs|tests|notebooks)/[\w./-]+$", span):
            if not os.path.exists(os.path.join(ROOT, path)):
                missing.append(path)
        setting = re.fullmatch(r"([a-z_][a-z0-9_]*)=\S+", span)
        if setting and setting[1] not in LEGACY_SETTINGS and setting[1] not in Preset.__dataclass_fields__:
            missing.append(span)
    assert missing == []


def test_flags_in_the_docs_are_options_of_a_command():
    known = _option_strings()
    quoted = {(os.path.basename(doc), flag) for doc in DOCS for span in _spans(doc)
              for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", span)}
    assert sorted((doc, flag) for doc, flag in quoted if flag not in known) == []
    assert {"--keep-checkpoints", "--wgan-steps", "--budgets"} <= known  # train, parity, bench: all were read


@pytest.mark.parametrize("doc", DOCS, ids=os.path.basename)
def test_links_to_files_of_the_repository_resolve(doc):
    with open(doc) as f:
        links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", f.read())
    local = [link for link in links if "://" not in link]
    assert [link for link in local if not os.path.exists(os.path.join(os.path.dirname(doc), link))] == []


def test_the_readme_presets_table_states_the_presets_values():
    """The README's table restates a few preset fields for the reader; they must be the presets' own."""
    with open(DOCS[0]) as f:
        rows = {cells[0]: cells[1:] for cells in (
            [c.strip() for c in line.strip().strip("|").split("|")] for line in f if line.startswith("| "))}
    columns = [MODELS[model][name] for model in ("dcgan", "wgan") for name in ("legacy", "default")]
    for preset, adam, run in zip(columns, rows["Adam lr / beta1 / beta2"], rows["run (`--steps`, `--batch-size`)"]):
        d_rate = f" (D: {rate_text(preset.d_learning_rate)})" if preset.d_learning_rate else ""
        assert adam == f"{rate_text(preset.learning_rate)}{d_rate} / {preset.beta1:g} / {preset.beta2:g}", preset.name
        assert run.startswith(f"{preset.run_steps} of {preset.run_batch_size}"), preset.name
        if preset.run_steps_bfloat16:
            assert f"{preset.run_steps_bfloat16} in bfloat16" in run, preset.name
    penalty_run = MODELS["dcgan"]["default"].with_loss("wgan-gp")  # the rescaled length the README gives
    with open(DOCS[0]) as f:
        assert f"{penalty_run.n_critic} critic steps:\n{penalty_run.run_steps_bfloat16} iterations" in f.read()
    for preset, r1 in zip(columns, rows["R1 penalty (`--r1`)"]):
        assert r1.startswith(f"gamma {preset.r1_weight:g}") if preset.r1_weight else r1 == "", preset.name
        assert (f"every {preset.r1_every}th D step" in r1) == (preset.r1_every > 1), preset.name
    for preset, loss in zip(columns, rows["loss"]):
        if preset.name != "legacy":  # the legacy columns describe the legacy losses in words
            assert loss == f"`{preset.loss}`", preset.name
    for preset, rates in zip(columns, rows["rates over the run (`--lr-decay-steps`)"]):
        decay = preset.lr_decay_steps
        assert rates == (f"falling linearly toward 0 over {decay}" if decay else "constant"), preset.name
