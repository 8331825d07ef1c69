"""genmnist.evaluate and genmnist.classifier on synthetic data with a tiny, untrained classifier.

The metrics are checked against closed forms (Frechet distance of Gaussians, the
classifier score of known p(y|x)), the CLI against .npz and PNG inputs, and the
classifier's save/load/hash checks with a tiny network; the pinned classifier is only loaded.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import genmnist  # noqa: F401  (TF log level)
from genmnist import classifier as C
from genmnist import evaluate as E
from genmnist.data import MnistSplit, write_split
from genmnist.errors import UserError
from genmnist.models import build_models


def tiny_model(seed=0):
    return C.build_model(filters=(2, 4), features=8, seed=seed)


@pytest.fixture(scope="module")
def tiny():
    return C.Classifier(tiny_model())


def digits(n, seed=0, shift=0):
    """Synthetic 'digits': a bright block whose position depends on the class, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for i, y in enumerate(labels):
        r, c = 2 + 2 * (y // 2) + shift, 4 + 4 * (y % 5)
        images[i, r:r + 8, c:c + 6] = 255
    return MnistSplit(images, labels)


# ------------------------------------------------------------------ metrics

def test_frechet_distance_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 6))
    assert E.frechet_distance(*E.gaussian(x), *E.gaussian(x)) == pytest.approx(0, abs=1e-8)


def test_frechet_distance_matches_closed_forms():
    x = np.random.default_rng(1).normal(size=(400, 5)) @ np.diag([1, 2, 3, 0.5, 1.5])
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    # Same covariance, shifted mean: |shift|^2 exactly.
    assert E.frechet_distance(*E.gaussian(x), *E.gaussian(x + shift)) == pytest.approx(shift @ shift, rel=1e-9)
    # Diagonal covariances: |dmu|^2 + sum (sqrt(a) - sqrt(b))^2.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 1.0, 0.0])
    expected = 2 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert E.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)
    # A full covariance against itself rotated: trace term by the general formula.
    s1 = np.array([[2.0, 0.5], [0.5, 1.0]])
    s2 = np.array([[1.0, -0.3], [-0.3, 3.0]])
    w, v = np.linalg.eigh(s1)
    r1 = v @ np.diag(np.sqrt(w)) @ v.T
    trace_root = np.sum(np.sqrt(np.linalg.eigvalsh(r1 @ s2 @ r1)))
    assert E.frechet_distance(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx(
        np.trace(s1) + np.trace(s2) - 2 * trace_root, rel=1e-9)


def test_classifier_score_known_values():
    assert E.classifier_score(np.eye(10)[np.arange(100) % 10]) == pytest.approx(10, rel=1e-6)
    assert E.classifier_score(np.eye(10)[np.zeros(100, int)]) == pytest.approx(1, rel=1e-6)
    assert E.classifier_score(np.full((50, 10), 0.1)) == pytest.approx(1, rel=1e-6)
    # Two classes, each image 0.8 / 0.2: p(y) = (0.5, 0.5), KL = 0.8 ln 1.6 + 0.2 ln 0.4.
    probs = np.zeros((4, 10))
    probs[:2, :2], probs[2:, :2] = [0.8, 0.2], [0.2, 0.8]
    assert E.classifier_score(probs) == pytest.approx(np.exp(0.8 * np.log(1.6) + 0.2 * np.log(0.4)), rel=1e-6)


def test_class_histogram():
    h = E.class_histogram(np.arange(100) % 10)
    assert h["class_kl_uniform"] == pytest.approx(0) and h["classes_covered"] == 10
    h = E.class_histogram(np.zeros(20, int))
    assert h["class_kl_uniform"] == pytest.approx(np.log(10)) and h["classes_covered"] == 1
    h = E.class_histogram(np.array([0] * 50 + [1] * 46 + [2] * 4))
    assert h["class_fractions"][:3] == [0.5, 0.46, 0.04] and h["classes_covered"] == 2
    assert h["class_kl_uniform"] == pytest.approx(sum(f * np.log(10 * f) for f in (0.5, 0.46, 0.04)))


def test_precision_recall_self_and_far():
    x = np.random.default_rng(2).normal(size=(300, 4))
    assert E.precision_recall(x, x) == (1.0, 1.0)
    assert E.precision_recall(x, x + 100.0) == (0.0, 0.0)
    # Samples collapsed on part of the real data: precise but low recall.
    precision, recall = E.precision_recall(x, x[x[:, 0] > 1.0])
    assert precision == 1.0 and recall < 0.5


def test_knn_radius_is_the_kth_other_point():
    x = np.array([[0.0], [1.0], [3.0], [6.0]])
    assert E.knn_radii2(x, k=1).tolist() == [1.0, 1.0, 4.0, 9.0]
    assert E.knn_radii2(x, k=2).tolist() == [9.0, 4.0, 9.0, 25.0]


def test_evaluate_images_real_against_itself(tiny):
    real = digits(300).images
    m = E.evaluate_images(real, tiny, real, subsample=200)
    assert m["num_images"] == 300 and m["precision"] == 1.0 and m["recall"] == 1.0
    assert m["frechet_distance"] == pytest.approx(0, abs=1e-6)
    assert 1 <= m["classifier_score"] <= 10 and sum(m["class_fractions"]) == pytest.approx(1, abs=1e-3)
    prepared = E.prepare_real(tiny, real, subsample=200)
    assert E.evaluate_images(real, tiny, prepared) == m
    far = E.evaluate_images(np.full((50, 28, 28), 255, np.uint8), tiny, prepared)
    assert far["frechet_distance"] > 1e-3 and far["recall"] == 0.0  # one point: a manifold of radius 0


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("images, message", [
    (np.zeros((50, 28, 28), np.float32), "must be uint8"),
    (np.zeros((50, 32, 32), np.uint8), "must have shape"),
    (np.zeros((50, 784), np.uint8), "must have shape"),
    (np.zeros((0, 28, 28), np.uint8), "is empty"),
    (np.zeros((5, 28, 28), np.uint8), "at least 9 are needed"),
    ([[0]], "must be a NumPy array"),
])
def test_bad_images(tiny, images, message):
    with pytest.raises(UserError, match=message):
        E.evaluate_images(images, tiny, digits(100).images)


def test_channel_axis_is_accepted(tiny):
    real = digits(60).images
    assert E.evaluate_images(real[..., None], tiny, real)["num_images"] == 60


# ------------------------------------------------------------------ command line

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mnist")
    write_split(str(directory), "train", *digits(400, seed=3))
    write_split(str(directory), "test", *digits(200, seed=4))
    return str(directory)


def run_cli(capsys, argv, classifier):
    E.main(argv, classifier=classifier)
    return capsys.readouterr()


def test_cli_npz_json_and_table(tmp_path, data_dir, tiny, capsys):
    path = tmp_path / "s.npz"
    np.savez(path, images=digits(120, seed=5, shift=1).images)
    out = run_cli(capsys, [str(path), "--data-dir", data_dir, "--json"], tiny).out
    result = json.loads(out)
    assert result["samples"]["num_images"] == 120 and result["real_vs_real"]["num_images"] == 120
    assert set(result["samples"]) == set(result["real_vs_real"])
    out = run_cli(capsys, [str(path), "--data-dir", data_dir, "--num", "50"], tiny).out
    assert "50 images from" in out and "Frechet distance" in out and "real-vs-real" in out


def test_cli_png_folder(tmp_path, data_dir, tiny, capsys):
    for i, image in enumerate(digits(40, seed=6).images):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), image)
    result = json.loads(run_cli(capsys, [str(tmp_path), "--data-dir", data_dir, "--json"], tiny).out)
    assert result["samples"]["num_images"] == 40


def test_cli_run_directory_generates_seeded_samples(tmp_path, data_dir, tiny, capsys):
    from genmnist import rundir
    from genmnist.presets import PRESETS

    preset = PRESETS["default"].replace(ema_decay=0.0)  # G alone is saved
    generator, _ = build_models(preset)  # untrained: the plumbing, not the quality
    rundir.checkpoint_manager(str(tmp_path), generator=generator).save()
    rundir.write_config(str(tmp_path), {"preset": preset.to_dict(), "batch_size": 8, "seed": 0})
    images, source = E.load_samples(str(tmp_path), num=20, seed=3)
    assert images.shape == (20, 28, 28) and images.dtype == np.uint8 and "seed 3" in source
    np.testing.assert_array_equal(images, E.load_samples(str(tmp_path), num=20, seed=3)[0])
    result = json.loads(run_cli(capsys, [str(tmp_path), "--num", "20", "--data-dir", data_dir, "--json"], tiny).out)
    assert result["samples"]["num_images"] == 20


@pytest.mark.parametrize("setup, message", [
    (lambda d: cv2.imwrite(str(d / "grid.png"), np.zeros((62, 62), np.uint8)), "not grids"),
    (lambda d: None, "neither config.json"),
    (lambda d: np.savez(d / "x.npz", pixels=np.zeros((3, 28, 28), np.uint8)), "no array 'images'"),
    (lambda d: np.savez(d / "x.npz", images=np.zeros((200, 28, 28), np.float32)), "must be uint8"),
    (lambda d: np.savez(d / "x.npz", images=np.zeros((3, 28, 28), np.uint8)), "at least 9"),
    (lambda d: (d / "x.npz").write_bytes(b"not a zip"), "is not a zip (.npz) archive"),
    (lambda d: np.savez(d / "x.npz", images=np.zeros((200, 28, 28, 3), np.uint8)), "colour images"),
    (lambda d: cv2.imwrite(str(d / "rgb.png"), np.stack([np.zeros((28, 28), np.uint8)] * 2
                                                        + [np.full((28, 28), 255, np.uint8)], -1)), "colour PNG"),
])
def test_cli_bad_input_is_one_line(tmp_path, data_dir, tiny, capsys, setup, message):
    setup(tmp_path)
    target = tmp_path / "x.npz" if (tmp_path / "x.npz").exists() else tmp_path
    with pytest.raises(SystemExit) as exit_info:
        E.main([str(target), "--data-dir", data_dir], classifier=tiny)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and message in err and "\n" not in err


def test_cli_checks_the_input_before_getting_the_classifier(tmp_path, data_dir, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the classifier was loaded or trained before the input was checked")
    monkeypatch.setattr(C, "load_classifier", never)
    np.savez(tmp_path / "one.npz", images=digits(1).images)
    with pytest.raises(SystemExit) as exit_info:
        E.main([str(tmp_path / "one.npz"), "--data-dir", data_dir])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and f"at least {C.FEATURE_DIM + 1}" in err and "\n" not in err


def test_grey_pngs_saved_as_rgb_are_read_as_grey(tmp_path):
    images = digits(5, seed=11).images
    for i, image in enumerate(images):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.stack([image] * 3, -1))
    np.testing.assert_array_equal(E.load_samples(str(tmp_path))[0], images)


def test_cli_help_mentions_inputs(capsys):
    with pytest.raises(SystemExit):
        E.parse_args(["--help"])
    out = capsys.readouterr().out
    assert ".npz" in out and "run directory" in out and "--json" in out and "Frechet" in out


# ------------------------------------------------------------------ the classifier's file and hash

TINY = {"filters": [2, 4], "features": 8}


def saved_tiny(tmp_path, seed=0):
    path = str(tmp_path / "tiny.npz")
    record = C.save_classifier(C.build_model(**TINY, seed=seed), path, {"name": "tiny", "model": TINY,
                                                                          "test_accuracy": 0.5})
    return path, record


def test_saved_classifier_loads_with_its_hash(tmp_path):
    path, record = saved_tiny(tmp_path)
    loaded = C.load_classifier(path)
    original = C.Classifier(C.build_model(**TINY, seed=0))
    assert loaded.sha256 == record["weights_sha256"] == original.sha256
    assert record["version"] == C.VERSION and "sha256 " + loaded.sha256[:12] in loaded.describe()
    images = digits(20).images
    np.testing.assert_array_equal(loaded(images)[0], original(images)[0])
    assert C.load_classifier(path, expect=loaded.sha256[:8]).sha256 == loaded.sha256


def test_other_weights_have_another_hash(tmp_path):
    assert C.Classifier(C.build_model(**TINY, seed=0)).sha256 != C.Classifier(C.build_model(**TINY, seed=1)).sha256


@pytest.mark.parametrize("damage, message", [
    (lambda path: np.savez(path, *C.build_model(**TINY, seed=1).get_weights()), "does not match its record"),
    (lambda path: open(path, "wb").write(b"junk"), "cannot read the classifier"),
    (lambda path: Path(path).unlink(), "no classifier at"),
    (lambda path: Path(C.record_path(path)).unlink(), "no classifier at"),
])
def test_damaged_classifier_is_refused(tmp_path, damage, message):
    path, _ = saved_tiny(tmp_path)
    damage(path)
    with pytest.raises(UserError, match=message):
        C.load_classifier(path)


def test_unexpected_classifier_is_refused(tmp_path):
    path, record = saved_tiny(tmp_path)
    with pytest.raises(UserError, match="not the expected 0123abcd"):
        C.load_classifier(path, expect="0123abcd")


def test_pinned_classifier_matches_its_record():
    """What ships with the package: loadable offline, its hash the recorded one, fit to score with."""
    pinned = C.load_classifier()
    record = json.loads(Path(C.record_path(C.PINNED)).read_text())
    assert pinned.sha256 == record["weights_sha256"] and pinned.feature_dim == C.FEATURE_DIM
    assert record["test_accuracy"] >= C.MIN_TEST_ACCURACY
    assert record["command"].startswith("python -m genmnist.classifier") and len(record["data_sha256"]) == 64


def test_cli_names_the_classifier_and_refuses_another(tmp_path, data_dir, capsys):
    path, record = saved_tiny(tmp_path)
    np.savez(tmp_path / "x.npz", images=digits(300, seed=5).images)
    E.main([str(tmp_path / "x.npz"), "--data-dir", data_dir, "--classifier", path, "--json"])
    settings = json.loads(capsys.readouterr().out)["settings"]
    assert settings["classifier_sha256"] == record["weights_sha256"] and "tiny" in settings["classifier"]
    with pytest.raises(SystemExit) as exit_info:
        E.main([str(tmp_path / "x.npz"), "--data-dir", data_dir, "--classifier", path,
                "--expect-classifier", "0123abcd"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "not the expected 0123abcd" in err and "\n" not in err


def test_classifier_cli_writes_a_loadable_classifier(tmp_path, data_dir, monkeypatch, capsys):
    monkeypatch.setattr(C, "train_classifier", lambda train, test, log, epochs, seed: (C.build_model(), 0.5))
    C.main(["--data-dir", data_dir, "--out", str(tmp_path / "mine")])
    loaded = C.load_classifier(str(tmp_path / "mine.npz"))
    assert loaded.info["train_images"] == 400 and loaded.info["data_sha256"] == C.data_hash(digits(400, seed=3))
    assert loaded.sha256[:12] in capsys.readouterr().out


@pytest.mark.slow
def test_training_is_seeded():
    train, test = digits(512, seed=9), digits(256, seed=10)
    logs = []
    a, acc_a = C.train_classifier(train, test, logs.append, epochs=2, filters=(2, 4), features=8)
    b, acc_b = C.train_classifier(train, test, lambda m: None, epochs=2, filters=(2, 4), features=8)
    assert len(logs) == 2 and "test accuracy" in logs[-1] and acc_a == acc_b
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


def test_unlabelled_train_split_is_a_user_error(tmp_path, capsys):
    write_split(str(tmp_path), "train", *digits(10))
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    write_split(str(tmp_path), "test", *digits(10))
    with pytest.raises(SystemExit) as exit_info:
        C.main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "c")])
    assert exit_info.value.code == 2 and "needs the labels" in capsys.readouterr().err


# ------------------------------------------------------------------ real MNIST

@pytest.mark.slow
def test_pinned_classifier_on_real_mnist(real_mnist_dir):
    """The pinned classifier's recorded accuracy holds on the real test split, and real train images
    score near the ceiling with it."""
    from genmnist.data import load_mnist
    clf = C.load_classifier()
    test = load_mnist(real_mnist_dir, "test")
    assert C.accuracy(clf, test) == pytest.approx(clf.info["test_accuracy"], abs=1e-4)
    train = load_mnist(real_mnist_dir, "train")
    m = E.evaluate_images(train.images[:2000], clf, test.images[:2000], subsample=2000)
    assert m["classifier_score"] > 9.5 and m["classes_covered"] == 10 and m["precision"] > 0.6
