"""The notebooks in notebooks/ run top to bottom, and their saved copies keep their outputs.

Fresh copies of every notebook are executed with nbclient in quick mode (``GENMNIST_QUICK=1``),
one test (and kernel) each, so a parallel test run spreads them, with the working directory
``notebooks/`` and outputs in a tmp dir.
Each notebook asserts its own claims through a ``check(...)`` helper (closed form vs trained values,
legacy graph vs Keras, checkpoint vs export, ...) and ends by printing how many passed, so a wrong
number fails the notebook, and a notebook whose checks were silently dropped fails here.
"""

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
# Fewest check(...) calls each notebook makes in quick mode (full mode makes a few more).
MIN_CHECKS = {"01_gan_theory.ipynb": 25, "02_train_mnist.ipynb": 13, "03_porting_from_tf1.ipynb": 19}
CELL_TIMEOUT = 600


def _load_executor():
    spec = importlib.util.spec_from_file_location("notebook_executor", NOTEBOOKS / "_execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


executor = _load_executor()


def _stdout(nb):
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs if o.output_type == "stream" and o.name == "stdout")


def _images(nb):
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_the_expected_notebooks_exist():
    assert sorted(p.name for p in executor.notebook_paths()) == sorted(MIN_CHECKS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MIN_CHECKS))
def test_notebook_runs_in_quick_mode(name, tmp_path):
    path = NOTEBOOKS / name
    nb, seconds = executor.execute_all([path], quick=True, out_root=tmp_path, timeout=CELL_TIMEOUT)[path]
    if isinstance(nb, Exception):
        pytest.fail(f"{name} failed after {seconds:.0f} s:\n{nb}", pytrace=False)
    out = _stdout(nb)
    assert "mode: QUICK" in out
    assert not re.search(r"^FAIL ", out, re.M)
    summary = re.findall(r"^(\d+) checks passed in \d+ s \(quick mode", out, re.M)
    assert summary, f"{name} did not reach its final summary cell"
    assert int(summary[-1]) >= MIN_CHECKS[name], f"{name} ran {summary[-1]} checks, expected >= {MIN_CHECKS[name]}"
    assert _images(nb) >= 2, f"{name} produced no pictures"


@pytest.mark.parametrize("name", sorted(MIN_CHECKS))
def test_saved_notebook_keeps_its_outputs(name):
    """The committed notebook was executed top to bottom, in order, without errors, pictures included."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), \
        f"{name}: re-run it top to bottom (python notebooks/_execute.py {name[:2]}) before saving"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], f"{name} was saved with an error"
    assert _images(nb) >= 2, f"{name} was saved without its pictures"
    assert nb.metadata.get("genmnist", {}).get("mode") in ("full", "quick")
    assert re.search(r"^\d+ checks passed", _stdout(nb), re.M), f"{name} was saved before its last cell ran"


@pytest.mark.parametrize("name", ["02_train_mnist.ipynb", "03_porting_from_tf1.ipynb"])
def test_data_notebooks_find_mnist_through_the_package(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code" and "find_mnist(WORK)" in c.source]
    assert len(cells) == 1 and "def " not in cells[0], f"{name}: one data cell, calling genmnist.data.find_mnist"


def test_synthetic_fallback_is_labelled_and_loadable(tmp_path, monkeypatch):
    """Without MNIST the notebooks fall back to typed digits, written as IDX files and loudly labelled."""
    from genmnist.data import find_mnist, load_mnist
    monkeypatch.setenv("GENMNIST_DATA", "synthetic")
    directory, source = find_mnist(tmp_path)
    assert source.startswith("SYNTHETIC FALLBACK, NOT MNIST")
    train, test = load_mnist(directory, "train"), load_mnist(directory, "test")
    assert train.images.shape == (6000, 28, 28) and test.images.shape == (1000, 28, 28)
    assert train.images.dtype == np.uint8 and train.images.max() == 255
    counts = np.bincount(train.labels, minlength=10)
    assert counts.min() > 450, counts                        # every digit class, roughly balanced
    # MNIST framing: digits centred in the 20x20 box; the bound leaves room for strokes that touch its edge,
    # as real MNIST's do, not for digits drawn off-centre.
    ink = train.images.astype(np.float64)
    assert ink[:, 4:24, 4:24].sum() / ink.sum() > 0.95
