"""legacy_v1: the _next_batch quirks, the graph's names and split, WGAN-GP's bug, and a train+predict smoke."""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import ast  # noqa: E402
import pathlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from legacy_v1 import predict, train  # noqa: E402
from legacy_v1.batching import LegacyBatcher  # noqa: E402
from legacy_v1.model import GANModel, WGANModel  # noqa: E402


def _imported(tree):
    """The top-level package of every module ``tree`` imports, wherever the import stands."""
    names = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    names += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    return {name.split(".")[0] for name in names}


def test_the_legacy_reference_imports_nothing_from_the_port():
    """legacy_v1 is the reference genmnist is checked against: its constants are its own, and its modules import
    nothing from genmnist.  The command lines (flags, one-line errors, MNIST loading: built on genmnist) are the
    parity package's; a legacy command's ``main`` only hands over to it, the graphs and the batcher not even that."""
    package = pathlib.Path(__file__).parent.parent / "legacy_v1"
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text())
        assert "genmnist" not in _imported(tree), path.name
        if path.name in ("model.py", "batching.py", "__init__.py"):
            assert "parity" not in _imported(tree), path.name
        elif path.name in ("train.py", "predict.py"):
            mains = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main"]
            rest = [node for node in tree.body if node not in mains]
            assert len(mains) == 1 and "parity" not in _imported(ast.Module(body=rest, type_ignores=[])), path.name


@pytest.mark.slow
def test_the_legacy_commands_keep_tensorflows_defaults():
    """The legacy commands' command lines live in the parity package, whose harness turns oneDNN off: importing
    them does not, so python -m legacy_v1.train runs with the settings it always had; the harness still does."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL")}
    code = "import os, sys; import {}; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), 'tensorflow' in sys.modules)"
    root = pathlib.Path(__file__).parent.parent
    for modules, expected in (("parity.legacy_train, parity.legacy_predict", "None False"),
                              ("parity.cli", "0 False")):
        done = subprocess.run([sys.executable, "-c", code.format(modules)], cwd=root, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == expected.split(), modules


def _rows(batches):
    return [b[:, 0].tolist() for b in batches]


def test_next_batch_slices_then_one_shuffled_batch_then_original_order():
    data = np.arange(10)[:, None]
    batcher = LegacyBatcher(data, 4, np.random.default_rng(3))
    got = _rows(batcher.next_batch() for _ in range(5))
    perm = np.arange(10)
    np.random.default_rng(3).shuffle(perm)
    assert got[0] == [0, 1, 2, 3] and got[1] == [4, 5, 6, 7]
    assert got[2] == perm[:4].tolist()          # wrap: first rows of a fresh permutation, tail 8, 9 skipped
    assert got[3] == [4, 5, 6, 7]               # the shuffled copy is lost: back to the original order at index 4
    perm2 = np.arange(10)
    rng = np.random.default_rng(3)
    rng.shuffle(np.arange(10))
    rng.shuffle(perm2)
    assert got[4] == perm2[:4].tolist()         # 8 + 4 > 10 again: a second fresh permutation
    assert data[:, 0].tolist() == list(range(10))  # the caller's array is never reordered


def test_next_batch_exact_fit_is_not_a_wrap():
    batcher = LegacyBatcher(np.arange(8)[:, None], 4, np.random.default_rng(0))
    assert _rows(batcher.next_batch() for _ in range(2)) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert batcher.index == 8
    batcher.next_batch()
    assert batcher.index == 4


def test_display_steps_follow_the_legacy_cadence():
    shown = train.display_steps(2001)
    assert shown[:11] == list(range(0, 101, 10))
    assert shown[11:20] == list(range(200, 1001, 100))
    assert shown[20:] == [2000]
    assert train.display_steps(15) == [0, 10, 14]


def test_gan_graph_names_split_and_untrained_batch_norm():
    model = GANModel(seed=0)
    names = {v.name[:-2]: tuple(v.shape) for v in model.model_vars}
    assert len(names) == 30
    assert names["g_w3"] == (5, 5, 32, 64) and names["discriminator/d_w3"] == (3136, 1024)
    assert names["bn2/beta"] == (3136,) and names["bn4/moving_variance"] == (16,)
    assert {v.name[:-2] for v in model.d_vars} == {f"discriminator/d_{k}{i}" for k in "wb" for i in range(1, 5)}
    assert {v.name[:-2] for v in model.g_vars} == {f"g_{k}{i}" for k in "wb" for i in range(1, 6)}
    with model.graph.as_default():
        assert len(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)) == 8
    rng = np.random.default_rng(0)
    feed = model.feed(rng.random((8, 784), np.float32), rng.standard_normal((8, 100)).astype(np.float32))
    with model.session() as sess:
        sess.run(model.init)
        out = sess.run(model.Gz, feed)
        for _ in range(2):
            sess.run([model.d_train, model.g_train], feed)
        values = sess.run({v.name[:-2]: v for v in model.model_vars})
    assert out.shape == (8, 28, 28, 1) and np.all(np.abs(out) < 1)
    for i in range(1, 5):
        assert not values[f"bn{i}/beta"].any()                 # never trained
        assert not values[f"bn{i}/moving_mean"].any()          # UPDATE_OPS never run
        assert np.all(values[f"bn{i}/moving_variance"] == 1)


def test_wgan_gradient_penalty_keeps_the_axis_1_bug():
    model = WGANModel(batch_size=4, seed=0)
    assert model.slopes.shape.as_list() == [4, 28, 1]  # a correct penalty would have shape [4]
    rng = np.random.default_rng(0)
    feed = {model.X: rng.random((4, 28, 28, 1), np.float32), model.Z: rng.standard_normal((4, 100)).astype(np.float32),
            model.U: np.full((4, 28, 28, 1), 0.5, np.float32)}
    with model.session() as sess:
        sess.run(model.init)
        gp, d_loss, g_loss = sess.run([model.gradient_penalty, model.d_loss, model.g_loss], feed)
        sess.run([model.d_train], feed)
        assert sess.run(model.gradient_penalty, feed) != gp  # the critic step moved the critic
    assert np.isfinite([gp, d_loss, g_loss]).all() and gp > 0
    assert {v.name.split("/")[0] for v in model.g_vars} == {"generator"}
    assert len(model.d_vars) == 8 and len(model.g_vars) == 10


def _write_csv(path, count, seed):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (count, 784)) * (rng.random((count, 784)) < 0.3)
    rows = np.concatenate([rng.integers(0, 10, (count, 1)), pixels], axis=1)
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    np.savetxt(path, rows, fmt="%d", delimiter=",", header=header, comments="")


@pytest.mark.slow
def test_train_and_predict_on_tiny_csv(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    _write_csv(data / "mnist_train.csv", 20, 0)
    out = tmp_path / "run"
    assert train.main(["--data-dir", str(data), "--steps", "12", "--seed", "1", "--out", str(out),
                       "--batch-size", "8"]) == 0
    printed = capsys.readouterr().out
    assert [line.split(":")[0] for line in printed.splitlines() if line.startswith("step")] == \
        ["step 0", "step 10", "step 11"]
    for k in (1, 2, 3):
        image = cv2.imread(str(out / f"out{k}.bmp"), cv2.IMREAD_GRAYSCALE)
        assert image.shape == (28, 28) and image.dtype == np.uint8
    reader = tf.train.load_checkpoint(str(out / "model"))
    saved = reader.get_variable_to_shape_map()
    assert "g_w1/Adam" in saved and "discriminator/d_w1/Adam" in saved
    assert not any(name.startswith("bn1/beta/") for name in saved)  # no optimizer ever owned the offsets
    assert not reader.get_tensor("bn1/beta").any()

    pred = tmp_path / "pred"
    args = ["--checkpoint", str(out), "--num", "5", "--out", str(pred), "--seed", "4"]
    assert predict.main(args) == 0
    images = [cv2.imread(str(pred / f"{i}.png"), cv2.IMREAD_GRAYSCALE) for i in range(5)]
    z = np.random.default_rng(4).normal(0, 1, (5, 100)).astype(np.float32)
    raw = predict.generate(str(out / "model"), z)
    np.testing.assert_array_equal(np.stack(images), train.legacy_uint8(raw))
    assert raw.shape == (5, 28, 28, 1) and len({r.tobytes() for r in raw}) == 5  # one image per z
    # Batch statistics at sampling (phase=1): an image depends on the rest of its batch.
    assert not np.array_equal(predict.generate(str(out / "model"), z[:2])[0], raw[0])


def test_cli_bad_input_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data-dir", str(tmp_path / "nope"), "--steps", "1", "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--checkpoint", str(tmp_path), "--out", str(tmp_path / "p")])
    assert exit_info.value.code == 2
    assert "no TF checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_init_from_loads_the_network_and_losses_csv_has_every_step(tmp_path):
    from genmnist import convert
    data = tmp_path / "data"
    data.mkdir()
    _write_csv(data / "mnist_train.csv", 20, 0)
    model = GANModel(seed=0)
    rng = np.random.default_rng(9)
    values = {v.op.name: rng.normal(0, 0.02, size=v.shape).astype(np.float32) for v in model.model_vars}
    prefix = convert.write_legacy(values, str(tmp_path / "init"))
    out = tmp_path / "run"
    assert train.main(["--data-dir", str(data), "--steps", "5", "--seed", "1", "--out", str(out),
                       "--batch-size", "8", "--init-from", prefix]) == 0
    reader = tf.train.load_checkpoint(str(out / "model"))
    for name, value in values.items():
        if name.startswith("bn"):  # untrained by the legacy split: exactly the loaded values
            np.testing.assert_array_equal(reader.get_tensor(name), value)
        elif value.size > 1:  # a few Adam steps from the loaded values, unrelated to the seeded ones
            assert np.corrcoef(reader.get_tensor(name).ravel(), value.ravel())[0, 1] > 0.9
    rows = np.loadtxt(out / "losses.csv", delimiter=",", skiprows=1)
    assert rows.shape == (5, 3) and list(rows[:, 0]) == [1, 2, 3, 4, 5] and np.isfinite(rows).all()
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data-dir", str(data), "--steps", "1", "--out", str(tmp_path / "r2"),
                    "--init-from", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
