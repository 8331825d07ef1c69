"""Sample quality against real MNIST: ``python -m genmnist.evaluate --help``.

Metrics, all computed with the pinned MNIST classifier that ships with genmnist
(genmnist.classifier; every score names its sha256):

* classifier score: the Inception-score form exp E_x[KL(p(y|x) || p(y))] over the whole
  set; 1 (every image the same class, or every prediction uniform) .. 10 (confident
  and balanced).
* Frechet distance between Gaussians fitted to the classifier's ``features`` layer
  for the samples and the real test split (FID with this network instead of Inception).
* the predicted-class histogram: per-class fractions, KL to uniform (0 = balanced,
  log 10 = 2.30 = one class) and how many classes hold >= 5% of the samples.
* precision / recall with k-nearest-neighbour manifolds in feature space
  (Kynkaanniemi et al. 2019): precision = the fraction of samples inside some real
  point's k-NN ball, recall = the fraction of real points inside some sample's ball.

The same metrics for real images (train images, as many as the samples, against the
same test split) are the ceiling: Frechet distance and class KL are not 0 even there.
A sample set needs at least feature-dim + 1 images (129 for the real classifier) so its
covariance has full rank; the Frechet distance is biased upward at small n, so compare
only values taken with the same n (default 10000).

The training loop can call ``prepare_real`` once and ``evaluate_images`` every N steps.
"""

import argparse
import glob
import json
import os
import zipfile
import zlib

import numpy as np

from genmnist import TF_LOG_HINT, argtypes
from genmnist.errors import UserError, exit_on_user_error, starting

DEFAULT_NUM = 10000
K = 3
PR_SUBSAMPLE = 5000
COVERED = 0.05
# What evaluate_images scores, in the order tables and RUN/eval.csv list them.
METRICS = ("classifier_score", "frechet_distance", "precision", "recall", "class_kl_uniform", "classes_covered")


def check_images(images, min_images, what="samples"):
    """uint8 [n, 28, 28] (a trailing channel of 1 is dropped), n >= ``min_images``; else UserError."""
    if not isinstance(images, np.ndarray):
        raise UserError(f"{what} must be a NumPy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise UserError(f"{what} must be uint8 pixels 0..255, got dtype {images.dtype}; "
                        "convert floats with genmnist.images.to_uint8(images, pixel_range)")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim == 4 and images.shape[-1] in (3, 4):
        raise UserError(f"{what} are colour images (shape {list(images.shape)}); the classifier reads grayscale "
                        "digits: convert them to grey [n, 28, 28] first")
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise UserError(f"{what} must have shape [n, 28, 28], got {list(images.shape)}")
    if len(images) == 0:
        raise UserError(f"{what} is empty: no images to evaluate")
    if len(images) < min_images:
        raise UserError(f"{what} has {len(images)} images; at least {min_images} are needed "
                        f"(feature dimension + 1, for a full-rank covariance); use thousands")
    return images


def min_images(classifier, k=K):
    return min_images_for(classifier.feature_dim, k)


def min_images_for(feature_dim, k=K):
    """Fewest images with a full-rank feature covariance and k neighbours each."""
    return max(feature_dim + 1, k + 1)


def classifier_score(probs, eps=1e-12):
    """exp(mean_x KL(p(y|x) || p(y))) with p(y) the mean prediction."""
    probs = np.asarray(probs, np.float64)
    marginal = probs.mean(0, keepdims=True)
    kl = np.sum(probs * (np.log(probs + eps) - np.log(marginal + eps)), axis=1)
    return float(np.exp(kl.mean()))


def gaussian(features):
    features = np.asarray(features, np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2), the trace term via symmetric eigendecompositions
    (tr (S1 S2)^1/2 = sum sqrt eig(S1^1/2 S2 S1^1/2)), which stays real and stable without scipy."""
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_root, 0.0))


def class_histogram(predicted, num_classes=10):
    """Fractions per predicted class, KL(fractions || uniform) and classes holding >= 5%."""
    fractions = np.bincount(np.asarray(predicted, np.int64), minlength=num_classes) / len(predicted)
    nonzero = fractions[fractions > 0]
    return {"class_kl_uniform": float(np.sum(nonzero * np.log(nonzero * num_classes))),
            "classes_covered": int(np.sum(fractions >= COVERED)),
            "class_fractions": [round(float(f), 4) for f in fractions]}


def _squared_distances(a, b):
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def knn_radii2(features, k=K, chunk=1000):
    """Squared distance of each point to its k-th nearest other point (the point itself is at index 0)."""
    return np.concatenate([np.partition(_squared_distances(features[i:i + chunk], features), k, axis=1)[:, k]
                           for i in range(0, len(features), chunk)])


def _coverage(points, centres, radii2, chunk=1000):
    """Fraction of ``points`` inside at least one ball (centre, radius) of the manifold."""
    inside = [(_squared_distances(points[i:i + chunk], centres) <= radii2[None, :] + 1e-9).any(1)
              for i in range(0, len(points), chunk)]
    return float(np.concatenate(inside).mean())


def precision_recall(real, fake, k=K, real_radii2=None):
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    real_radii2 = knn_radii2(real, k) if real_radii2 is None else real_radii2
    return _coverage(fake, real, real_radii2), _coverage(real, fake, knn_radii2(fake, k))


def _subsample(features, size, seed):
    if len(features) <= size:
        return features
    return features[np.sort(np.random.default_rng(seed).choice(len(features), size, replace=False))]


class RealSet:
    """What the metrics need from the real images, computed once: Gaussian and k-NN manifold."""

    def __init__(self, classifier, images, k=K, subsample=PR_SUBSAMPLE, seed=0):
        images = check_images(images, min_images(classifier, k), "the real image set")
        features, _ = classifier(images)
        self.num_images, self.k, self.subsample, self.seed = len(images), k, subsample, seed
        self.mu, self.sigma = gaussian(features)
        self.pr_features = _subsample(features, subsample, seed)
        self.pr_radii2 = knn_radii2(self.pr_features, k)


def prepare_real(classifier, images, k=K, subsample=PR_SUBSAMPLE, seed=0):
    return RealSet(classifier, images, k, subsample, seed)


def evaluate_images(images, classifier, real, k=K, subsample=PR_SUBSAMPLE, seed=0):
    """Every metric for uint8 ``images`` [n, 28, 28] against ``real`` (uint8 images or a :class:`RealSet`).

    Precision/recall use at most ``subsample`` points of each set, chosen with ``seed``; with a
    RealSet, its own k/subsample/seed apply (prepare it once, evaluate many times).
    """
    if not isinstance(real, RealSet):
        real = RealSet(classifier, real, k, subsample, seed)
    images = check_images(images, min_images(classifier, real.k))
    features, probs = classifier(images)
    precision, recall = precision_recall(real.pr_features, _subsample(features, real.subsample, real.seed),
                                         real.k, real.pr_radii2)
    return {"num_images": len(images), "classifier_score": classifier_score(probs),
            "frechet_distance": frechet_distance(*gaussian(features), real.mu, real.sigma),
            "precision": precision, "recall": recall, **class_histogram(probs.argmax(1))}


# ---------------------------------------------------------------- command line

def _generate(run_dir, num, seed):
    """``num`` images from a run's latest checkpoint, exactly as ``genmnist.sample`` draws them."""
    from genmnist import sample, trained

    generator, preset = trained.load_generator(run_dir)
    return sample.generate(generator, preset, num, seed)


def _read_npz(path):
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a zip (.npz) archive; write it with np.savez(path, images=uint8_array)")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "images" not in data.files:
                raise UserError(f"{path} has no array 'images' (it has {', '.join(data.files) or 'none'}); "
                                "save with np.savez(path, images=uint8_array)")
            return data["images"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:  # damaged inside the zip
        reason = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise UserError(f"cannot read {path} as .npz ({reason}); the file is damaged, write it again") from None


def _read_pngs(folder):
    paths = sorted(glob.glob(os.path.join(folder, "*.png")))
    if not paths:
        raise UserError(f"{folder} has neither config.json (a run directory) nor .png files")
    import cv2
    images = []
    for p in paths:
        image = cv2.imread(p, cv2.IMREAD_UNCHANGED)
        if image is None:
            raise UserError(f"cannot read {p} as an image")
        if image.ndim == 3:  # grey saved as RGB is fine; real colour would be read wrongly as grey
            if image.shape[2] == 4 or not (image == image[..., :1]).all():
                raise UserError(f"{p} is a colour PNG; the classifier reads grayscale digits: save it as "
                                "grayscale first (e.g. cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))")
            image = image[..., 0]
        if image.shape != (28, 28):
            raise UserError(f"{p} is {image.shape[1]}x{image.shape[0]}; only single 28x28 digits are supported, "
                            "not grids (to evaluate a run, pass its run directory)")
        images.append(image)
    return np.stack(images)


def load_samples(path, num=None, seed=0):
    """(uint8 images, description) from a run directory, an .npz or a folder of PNGs."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json")):
        num = DEFAULT_NUM if num is None else num
        return _generate(path, num, seed), f"{num} samples generated from {path} (seed {seed})"
    if os.path.isdir(path):
        images = _read_pngs(path)
    elif os.path.isfile(path) and path.endswith(".npz"):
        images = _read_npz(path)
    elif os.path.exists(path):
        raise UserError(f"{path} is not a run directory, an .npz file or a folder of PNGs")
    else:
        raise UserError(f"{path} does not exist")
    images = images[:num] if num is not None else images
    return images, f"{len(images)} images from {path}"


def parse_args(argv=None):
    p = argtypes.Parser(
        prog="python -m genmnist.evaluate",
        description=__doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0], epilog=TF_LOG_HINT,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("samples", metavar="SAMPLES",
                   help="a run directory (images are generated from its latest checkpoint), an .npz with a "
                        "uint8 array 'images' [N, 28, 28], or a folder of 28x28 grayscale PNGs (one digit each; "
                        "sample grids are not supported)")
    p.add_argument("--data-dir", default=None,
                   help="directory with the MNIST IDX files (train for the classifier and the real-vs-real "
                        "reference, t10k as the real set); default: tensorflow-datasets")
    p.add_argument("--num", type=argtypes.positive_int, default=None,
                   help=f"images to evaluate: generated from a run directory (default {DEFAULT_NUM}), or the "
                        "first N of an .npz / PNG folder (default all). Compare Frechet distances only at equal N")
    p.add_argument("--seed", type=argtypes.seed, default=0,
                   help="seeds z, the real-vs-real reference and the subsamples")
    p.add_argument("--k", type=argtypes.positive_int, default=K,
                   help="neighbours defining the precision/recall manifolds")
    p.add_argument("--pr-subsample", type=argtypes.positive_int, default=PR_SUBSAMPLE,
                   help="at most this many points per set for precision/recall (its cost grows as the square)")
    p.add_argument("--classifier", default=None, metavar="NPZ",
                   help="score with this classifier (written by python -m genmnist.classifier) instead of the "
                        "pinned one that ships with genmnist; scores taken with different classifiers do not compare")
    p.add_argument("--expect-classifier", default=None, metavar="SHA256",
                   help="refuse to score unless the classifier's weights have this sha256 (or a prefix of it, "
                        "8+ hex digits): to be sure a number is comparable with a table that names its hash")
    p.add_argument("--json", action="store_true", help="print only a JSON object (samples, real_vs_real, settings)")
    return p.parse_args(argv)


def _table(samples, reference, k):
    rows = [("classifier score (max 10)", "classifier_score", "{:.3f}"),
            ("Frechet distance (features)", "frechet_distance", "{:.3f}"),
            (f"precision (k={k})", "precision", "{:.3f}"), (f"recall (k={k})", "recall", "{:.3f}"),
            ("class KL to uniform", "class_kl_uniform", "{:.4f}"),
            (f"classes >= {COVERED:.0%} of images", "classes_covered", "{}")]
    lines = [f"{'metric':<30}{'samples':>12}{'real-vs-real':>14}"]
    lines += [f"{name:<30}{fmt.format(samples[key]):>12}{fmt.format(reference[key]):>14}" for name, key, fmt in rows]
    for label, m in (("samples", samples), ("real", reference)):
        fractions = " ".join(f"{d}:{f:.3f}" for d, f in enumerate(m["class_fractions"]))
        lines.append(f"class fractions, {label:<8}" + fractions)
    return "\n".join(lines)


def main(argv=None, classifier=None):
    """``classifier`` may be injected (tests); otherwise the pinned one (or ``--classifier``) is loaded."""
    args = parse_args(argv)
    with starting("genmnist.evaluate", __name__ == "__main__"):
        from genmnist.classifier import FEATURE_DIM, load_classifier
        from genmnist.data import load_mnist
    with exit_on_user_error("genmnist.evaluate"):
        images, source = load_samples(args.samples, args.num, args.seed)
        # everything about the input is checked before the data and the classifier are loaded
        feature_dim = classifier.feature_dim if classifier is not None else FEATURE_DIM
        images = check_images(images, min_images_for(feature_dim, args.k))
        train, test = load_mnist(args.data_dir, "train"), load_mnist(args.data_dir, "test")
        if classifier is None:
            classifier = load_classifier(args.classifier, args.expect_classifier)
        real = prepare_real(classifier, test.images, args.k, args.pr_subsample, args.seed)
        samples = evaluate_images(images, classifier, real)
        pick = np.random.default_rng(args.seed + 2).permutation(len(train.images))[:len(images)]
        reference = evaluate_images(train.images[np.sort(pick)], classifier, real)
        settings = {"source": source, "real": f"MNIST test split ({len(test.images)} images)",
                    "real_vs_real": f"{reference['num_images']} MNIST train images vs the test split",
                    "k": args.k, "pr_subsample": args.pr_subsample, "seed": args.seed,
                    "classifier": classifier.describe(), "classifier_sha256": classifier.sha256,
                    "classifier_test_accuracy": classifier.info.get("test_accuracy")}
        if args.json:
            print(json.dumps({"samples": samples, "real_vs_real": reference, "settings": settings}, indent=2))
            return
        print(f"{source}\nagainst the {settings['real']}; real-vs-real: {settings['real_vs_real']}\n"
              f"scored with the {settings['classifier']}")
        print(_table(samples, reference, args.k))


if __name__ == "__main__":
    main()
