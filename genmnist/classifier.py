"""The pinned MNIST classifier that ``genmnist.evaluate`` measures samples with.

Every score in this project is taken with one network, so numbers from different
machines and sessions can be compared.  Its weights ship with the package
(``genmnist/assets/mnist_classifier.npz``) beside a record
(``mnist_classifier.json``) of how they were made: the training command, the
train data's sha256, the test accuracy and the weights' own sha256.  Loading needs
no data, no training and no network, and checks the weights against that hash.

A different classifier can still be trained explicitly::

    python -m genmnist.classifier --data-dir /path/to/mnist --out my_classifier

and used with ``genmnist.evaluate --classifier my_classifier.npz``; evaluate prints
the hash of whichever network scored, so mixed yardsticks are visible.

The network: three conv + batch-norm blocks, a 128-unit ``features`` layer (the
Frechet distance and precision/recall space) and 10 logits.  Training is seeded
through the layers' initialiser/dropout seeds and a NumPy permutation per epoch
rather than ``keras.utils.set_random_seed``, so it never reseeds a GAN run that
shares the process.
"""

import hashlib
import json
import os
import sys
import time

import numpy as np

from genmnist import argtypes
from genmnist.errors import UserError, exit_on_user_error

VERSION = 1  # the architecture and recipe; a record of another version cannot be loaded into build_model
SEED = 1234
EPOCHS = 3
LEARNING_RATE = 1e-3
DECAY_PER_EPOCH = 0.5  # halve the rate each epoch: the last epoch fine-tunes
BATCH_SIZE = 128
FEATURES = "features"
FEATURE_DIM = 128  # width of the features layer: sets the fewest images evaluate accepts
MIN_TEST_ACCURACY = 0.99  # below this a newly trained classifier is reported as unfit to score with
PINNED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "mnist_classifier.npz")


def record_path(weights_path):
    """The JSON record beside a weights file: ``X.npz`` -> ``X.json``."""
    return os.path.splitext(weights_path)[0] + ".json"


def data_hash(split):
    """sha256 of the train images and labels bytes: which data a classifier was trained on."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(split.images, np.uint8).tobytes())
    h.update(np.ascontiguousarray(split.labels, np.uint8).tobytes())
    return h.hexdigest()


def weights_hash(arrays):
    """sha256 over the weight arrays in order (dtype, shape, bytes): the classifier's identity,
    independent of the file format that carries it."""
    h = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def build_model(filters=(32, 64, 128), features=FEATURE_DIM, seed=SEED):
    """uint8-valued float images [n, 28, 28, 1] -> logits [n, 10]; layer ``features`` is the penultimate one."""
    import keras

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
    return keras.Model(inputs, logits, name="mnist_classifier")


class Classifier:
    """Wraps the Keras model: uint8 images [n, 28, 28] -> (features [n, d], probabilities [n, 10]), float64.

    ``info`` is the record it was loaded with; ``sha256`` names the weights (see :func:`weights_hash`)."""

    def __init__(self, model, info=None):
        import keras

        self.model, self.info = model, dict(info or {})
        self.sha256 = weights_hash(model.get_weights())
        self._both = keras.Model(model.inputs, [model.get_layer(FEATURES).output, model.outputs[0]])
        self.feature_dim = int(model.get_layer(FEATURES).output.shape[-1])

    def describe(self):
        """One line naming the network that scored: where it came from, its hash and test accuracy."""
        accuracy = self.info.get("test_accuracy")
        return (f"classifier {self.info.get('name', 'unrecorded')} sha256 {self.sha256[:12]}"
                + (f", test accuracy {accuracy:.4f}" if accuracy is not None else ""))

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
    import keras

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


def save_classifier(model, weights_path, info):
    """Write the weights (.npz) and their record (.json, with the weights' sha256), each via a rename,
    record last: a crash in between leaves a weights file whose record is missing, which load refuses."""
    weights = model.get_weights()
    record = {**info, "version": VERSION, "weights_sha256": weights_hash(weights)}
    json_path = record_path(weights_path)
    if os.path.exists(json_path):
        os.remove(json_path)  # never leave an old record beside new weights
    tmp = weights_path + ".tmp.npz"
    np.savez_compressed(tmp, *weights)
    os.replace(tmp, weights_path)
    with open(json_path + ".tmp", "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    os.replace(json_path + ".tmp", json_path)
    return record


def load_classifier(weights_path=None, expect=None):
    """The classifier in ``weights_path`` (default: the pinned one), checked against its record.

    ``expect``: a sha256 (or a prefix of one, at least 8 hex digits) the weights must have;
    any other classifier is refused.  Refuses a missing or damaged file with one line."""
    weights_path = weights_path or PINNED
    json_path = record_path(weights_path)
    try:
        with open(json_path) as f:
            info = json.load(f)
        with np.load(weights_path, allow_pickle=False) as data:
            arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
    except FileNotFoundError as err:
        raise UserError(f"no classifier at {err.filename}: a classifier is a .npz and its .json record, "
                        "as python -m genmnist.classifier writes them") from None
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"cannot read the classifier {weights_path} ({str(err).splitlines()[0][:100]})") from None
    digest = weights_hash(arrays)
    if info.get("weights_sha256") != digest:
        raise UserError(f"{weights_path} does not match its record (weights sha256 {digest[:12]}, "
                        f"recorded {str(info.get('weights_sha256'))[:12]}): the file is damaged or was replaced")
    if info.get("version") != VERSION:
        raise UserError(f"{weights_path} is a version {info.get('version')} classifier; this genmnist "
                        f"reads version {VERSION}")
    if expect is not None and not digest.startswith(expect.lower()):
        raise UserError(f"the classifier {weights_path} has sha256 {digest[:12]}, not the expected {expect}")
    model = build_model(**info.get("model", {}))
    model.set_weights(arrays)
    return Classifier(model, info)


def parse_args(argv=None):
    p = argtypes.Parser(prog="python -m genmnist.classifier",
                        description="Train an MNIST evaluation classifier and write it as OUT.npz + OUT.json "
                                    "(genmnist.evaluate --classifier OUT.npz scores with it). The pinned one "
                                    "that ships with genmnist was made by this command.")
    p.add_argument("--data-dir", default=None,
                   help="directory with the MNIST IDX files (train and t10k, with labels); "
                        "default: tensorflow-datasets")
    p.add_argument("--out", required=True, help="output path without extension (OUT.npz and OUT.json)")
    p.add_argument("--epochs", type=argtypes.positive_int, default=EPOCHS, help="passes over the train split")
    p.add_argument("--seed", type=argtypes.seed, default=SEED, help="seeds initialisers, dropout and shuffling")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with exit_on_user_error("python -m genmnist.classifier"):
        from genmnist import precision
        from genmnist.data import load_mnist

        train, test = load_mnist(args.data_dir, "train"), load_mnist(args.data_dir, "test")
        if train.labels is None or test.labels is None:
            raise UserError("training a classifier needs the labels: train-labels-idx1-ubyte[.gz] and "
                            "t10k-labels-idx1-ubyte[.gz]")
        log = lambda message: print(message, file=sys.stderr)  # noqa: E731
        start = time.perf_counter()
        model, test_accuracy = train_classifier(train, test, log, epochs=args.epochs, seed=args.seed)
        info = {"name": os.path.basename(args.out), "test_accuracy": round(test_accuracy, 4),
                "train_seconds": round(time.perf_counter() - start, 1), "train_images": len(train.images),
                "data_sha256": data_hash(train), "seed": args.seed, "epochs": args.epochs,
                "command": " ".join(["python -m genmnist.classifier", *(argv if argv is not None else sys.argv[1:])]),
                "machine": precision.cpu_description(), "date": time.strftime("%Y-%m-%d")}
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        record = save_classifier(model, args.out + ".npz", info)
        print(f"wrote {args.out}.npz (sha256 {record['weights_sha256'][:12]}), test accuracy {test_accuracy:.4f}")
        if test_accuracy < MIN_TEST_ACCURACY:
            log(f"warning: test accuracy {test_accuracy:.4f} is below {MIN_TEST_ACCURACY}")


if __name__ == "__main__":
    main()
