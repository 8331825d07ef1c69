"""The MNIST classifier that ``genmnist.evaluate`` measures samples with.

A small CNN (three conv + batch-norm blocks, a 128-unit ``features`` layer, 10 logits), trained
once on the real train split and cached in ``$GENMNIST_CACHE`` (default
``~/.cache/genmnist``) as ``mnist_classifier.keras`` plus ``mnist_classifier.json``
recording the training data's sha256, :data:`VERSION` and the measured test
accuracy.  It is retrained only when either file is missing or the recorded hash or
version differs, so every evaluation of the same data uses the same network and
metrics are comparable across runs.  Nothing is downloaded.

Training is seeded through the layers' own initializer/dropout seeds and a NumPy
permutation per epoch rather than ``keras.utils.set_random_seed``: the GAN training
loop may build this classifier mid-run, and a global reseed there would change the
GAN's own randomness.
"""

import hashlib
import json
import os
import time

import keras
import numpy as np

from genmnist.data import load_mnist
from genmnist.errors import UserError

VERSION = 1  # bump when the architecture or training recipe changes: cached models retrain
SEED = 1234
EPOCHS = 3
LEARNING_RATE = 1e-3
DECAY_PER_EPOCH = 0.5  # halve the rate each epoch: the last epoch fine-tunes
BATCH_SIZE = 128
FEATURES = "features"
FEATURE_DIM = 128  # width of the features layer: sets the fewest images evaluate accepts
NAME = "mnist_classifier"


def default_cache_dir(path=None):
    return path or os.environ.get("GENMNIST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "genmnist")


def data_hash(split):
    """sha256 of the train images and labels bytes: a different train set means a different classifier."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(split.images, np.uint8).tobytes())
    h.update(np.ascontiguousarray(split.labels, np.uint8).tobytes())
    return h.hexdigest()


def build_model(filters=(32, 64, 128), features=FEATURE_DIM, seed=SEED):
    """uint8-valued float images [n, 28, 28, 1] -> logits [n, 10]; layer ``features`` is the penultimate one."""
    init = lambda i: keras.initializers.GlorotUniform(seed=seed + i)  # noqa: E731
    x = inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Rescaling(1 / 255)(x)
    for i, f in enumerate(filters):
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, kernel_initializer=init(i))(x)
        x = keras.layers.Activation("relu")(keras.layers.BatchNormalization()(x))
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(features, activation="relu", kernel_initializer=init(10), name=FEATURES)(x)
    x = keras.layers.Dropout(0.3, seed=seed)(x)
    logits = keras.layers.Dense(10, kernel_initializer=init(11), name="logits")(x)
    return keras.Model(inputs, logits, name=NAME)


class Classifier:
    """Wraps the Keras model: uint8 images [n, 28, 28] -> (features [n, d], probabilities [n, 10]), float64."""

    def __init__(self, model, info=None):
        self.model, self.info = model, info or {}
        self._both = keras.Model(model.inputs, [model.get_layer(FEATURES).output, model.outputs[0]])
        self.feature_dim = int(model.get_layer(FEATURES).output.shape[-1])

    def _run(self, images, batch_size):
        feats, logits = [], []
        for start in range(0, len(images), batch_size):
            chunk = np.asarray(images[start:start + batch_size], np.float32)[..., None]
            f, logit = self._both([chunk], training=False)
            feats.append(np.asarray(f, np.float64))
            logits.append(np.asarray(logit, np.float64))
        return np.concatenate(feats), np.concatenate(logits)

    def __call__(self, images, batch_size=1000):
        features, logits = self._run(images, batch_size)
        probs = np.exp(logits - logits.max(1, keepdims=True))
        return features, probs / probs.sum(1, keepdims=True)

    def logits(self, images, batch_size=1000):
        return self._run(images, batch_size)[1]


def accuracy(classifier, split):
    return float(np.mean(classifier(split.images)[1].argmax(1) == split.labels))


def train_classifier(train, test, log=print, epochs=EPOCHS, seed=SEED, **model_kwargs):
    """Train on ``train`` with a seeded shuffle; returns (model, test accuracy)."""
    model = build_model(seed=seed, **model_kwargs)
    steps = len(train.images) // BATCH_SIZE + (len(train.images) % BATCH_SIZE > 0)
    rate = keras.optimizers.schedules.ExponentialDecay(LEARNING_RATE, steps, DECAY_PER_EPOCH)
    model.compile(optimizer=keras.optimizers.Adam(rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = train.images[..., None].astype(np.float32), train.labels.astype(np.int32)
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        history = model.fit(x[order], y[order], batch_size=BATCH_SIZE, epochs=1, shuffle=False, verbose=0)
        test_accuracy = accuracy(Classifier(model), test)
        log(f"classifier epoch {epoch + 1}/{epochs}: loss {history.history['loss'][-1]:.4f}, "
            f"test accuracy {test_accuracy:.4f}")
    return model, test_accuracy


def get_classifier(data_dir=None, cache_dir=None, log=print, train=None, test=None, trainer=train_classifier):
    """The cached classifier for this train split, training it first when needed.

    ``train``/``test`` may be preloaded splits (else read from ``data_dir``);
    ``trainer`` is injectable so tests need not train the real network.
    """
    train = train if train is not None else load_mnist(data_dir, "train")
    if train.labels is None:
        raise UserError("the MNIST train split has no labels; the classifier needs train-labels-idx1-ubyte[.gz]")
    directory = default_cache_dir(cache_dir)
    model_path, info_path = os.path.join(directory, NAME + ".keras"), os.path.join(directory, NAME + ".json")
    digest = data_hash(train)
    try:
        with open(info_path) as f:
            info = json.load(f)
        if info["data_sha256"] == digest and info["version"] == VERSION:
            return Classifier(keras.models.load_model(model_path), info)
        log(f"cached classifier in {directory} is for other data or version {info['version']}; retraining")
    except Exception:  # missing, unreadable or damaged files all mean the same: train it again
        log(f"no usable cached classifier in {directory}; training one (a few minutes, once)")
    test = test if test is not None else load_mnist(data_dir, "test")
    if test.labels is None:
        raise UserError("the MNIST test split has no labels; the classifier needs t10k-labels-idx1-ubyte[.gz]")
    start = time.perf_counter()
    model, test_accuracy = trainer(train, test, log)
    info = {"version": VERSION, "data_sha256": digest, "test_accuracy": test_accuracy,
            "train_seconds": round(time.perf_counter() - start, 1), "train_images": len(train.images)}
    log(f"classifier test accuracy {test_accuracy:.4f} after {info['train_seconds']} s")
    if test_accuracy < 0.99:
        log(f"warning: classifier test accuracy {test_accuracy:.4f} is below 0.99")
    os.makedirs(directory, exist_ok=True)
    if os.path.exists(info_path):
        os.remove(info_path)  # never leave an old record beside a new model
    # Model first, JSON last, each via rename: a crash in between leaves no valid JSON, so it retrains.
    model.save(model_path + ".tmp.keras")
    os.replace(model_path + ".tmp.keras", model_path)
    with open(info_path + ".tmp", "w") as f:
        json.dump(info, f, indent=2)
    os.replace(info_path + ".tmp", info_path)
    return Classifier(model, info)
