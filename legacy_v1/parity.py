"""Side-by-side parity of legacy_v1 (tf.compat.v1 graph) and genmnist (Keras 3) in the legacy preset.

``python -m legacy_v1.parity [--data-dir DIR] [--batch-size B] [--steps K] [--seed S]``
prints one row per checked quantity and exits 0 when every row is within
tolerance, 1 otherwise.  Following TensorFlow's migration-validation guide:
both sides are built from one seed, v1's initial weights are copied into v2
(``genmnist.models.legacy_variables``), both are fed identical NumPy z and
real batches, and the check climbs 1 variables -> 2 forward -> 3 losses ->
4 gradients -> 5 K training iterations after the 30 D-only warm-up steps
(every variable after each step, both losses at each step).

Tolerances (element-wise ``|v1 - v2| <= atol + rtol * |v1|``, as np.allclose)
start from the guide's forward-pass rtol 1e-6 / atol 1e-5 and are tightened
to what float32 arithmetic allows here (oneDNN off, grappler's arithmetic and
remapping rewrites off on both sides):

* variables, forward, losses: the two graphs run the same kernels in the same
  order, so they agree to the last bit; tolerance 0 (exact) would pass, but
  a few ulps (rtol 1e-6, atol 1e-7) keep the check meaningful without being brittle
  across CPUs whose matmul kernels block differently.
* gradients: tf.gradients and GradientTape build the same backward ops but may
  sum the two paths into shared variables (D sees real and fake) in a different
  order; float32 addition is not associative, so a few ulps of each summand
  (atol 1e-7 for values of order 1e-3..1, rtol 1e-5).
* training: TF1's fused ApplyAdam kernel and Keras 3's Adam compute the same
  formula (both with epsilon 1e-8 here; Keras' default 1e-7 is overridden by
  the preset) with different operation order, so each step adds ~1 ulp per
  weight, and Adam's m / sqrt(v) step amplifies gradient noise of weights whose
  gradient is tiny; over K steps the drift grows, so variables use rtol 1e-4
  / atol 1e-5 (the learning rate is 5e-4: a wrong update would miss by ~5e-4) and
  losses rtol 1e-4.
The achieved numbers are recorded in docs/parity.md.

The WGAN-GP pair is not compared: genmnist has no WGAN model yet.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False, "remapping": False})

from genmnist import losses, rundir  # noqa: E402
from genmnist.errors import exit_on_user_error  # noqa: E402
from genmnist.models import legacy_variables  # noqa: E402
from genmnist.presets import PRESETS  # noqa: E402
from genmnist.training import GANTrainer  # noqa: E402
from legacy_v1.batching import LegacyBatcher, legacy_z  # noqa: E402
from legacy_v1.model import GANModel  # noqa: E402

WARMUP_D_STEPS = PRESETS["legacy"].warmup_d_steps
# (rtol, atol) per stage; see the module docstring for why.
TOLERANCES = {
    "variables": (0.0, 0.0),
    "forward": (1e-6, 1e-7),
    "losses": (1e-6, 1e-7),
    "gradients": (1e-5, 1e-7),
    "training": (1e-4, 1e-5),
}


@dataclasses.dataclass
class Row:
    stage: str
    quantity: str
    max_abs: float
    max_rel: float
    rtol: float
    atol: float
    ok: bool

    def line(self):
        return (f"{self.stage:<11} {self.quantity:<36} {self.max_abs:10.3e} {self.max_rel:10.3e} "
                f"{self.rtol:8.0e} {self.atol:8.0e}  {'PASS' if self.ok else 'FAIL'}")


HEADER = (f"{'stage':<11} {'quantity':<36} {'max abs':>10} {'max rel':>10} {'rtol':>8} {'atol':>8}  result")


def compare(stage, quantity, v1_value, v2_value, tolerance=None):
    """One table row: element-wise allclose (NaN must match NaN), max abs and max relative diffs."""
    rtol, atol = tolerance or TOLERANCES[stage]
    a, b = np.asarray(v1_value, np.float64), np.asarray(v2_value, np.float64)
    if a.shape != b.shape:
        return Row(stage, f"{quantity} shape {a.shape} vs {b.shape}", np.inf, np.inf, rtol, atol, False)
    diff = np.atleast_1d(np.abs(a - b))
    diff[np.atleast_1d((np.isnan(a) & np.isnan(b)) | (a == b))] = 0.0  # matching NaNs and infinities
    rel = diff / np.maximum(np.atleast_1d(np.abs(a)), np.finfo(np.float32).tiny)
    ok = bool(np.all(diff <= atol + rtol * np.abs(np.nan_to_num(a))))
    return Row(stage, quantity, float(diff.max(initial=0)), float(rel.max(initial=0)), rtol, atol, ok)


def synthetic_images(rng, count):
    """Digit-sized uint8 blobs in a 20x20 box with black borders, like MNIST's framing."""
    images = np.zeros((count, 28, 28), np.uint8)
    images[:, 4:24, 4:24] = rng.integers(0, 256, (count, 20, 20)) * (rng.random((count, 20, 20)) < 0.2)
    return images


def real_pixels(data_dir, count, rng):
    """``count`` images as legacy float32 [count, 784] in [0, 1], shuffled once like the legacy loader."""
    if data_dir is None:
        images = synthetic_images(rng, count)
    else:
        from genmnist.data import load_mnist
        images = load_mnist(data_dir, "train").images
        images = images[rng.permutation(len(images))[:count]]
    return (images.reshape(len(images), 784).astype(np.float64) / 255.0).astype(np.float32)


class Pair:
    """The v1 graph and the v2 Keras models with identical weights (v1's copied into v2)."""

    def __init__(self, seed):
        self.v1 = GANModel(learning_rate=PRESETS["legacy"].learning_rate, beta1=PRESETS["legacy"].beta1, seed=seed)
        with self.v1.graph.as_default():
            self.v1_vars = {v.name[:-2]: v for v in self.v1.model_vars}
            trainable = [v for v in self.v1.model_vars if v.trainable]
            self.v1_trainable = [v.name[:-2] for v in trainable]
            self.v1_grads = {loss: dict(zip(self.v1_trainable, tf.gradients(getattr(self.v1, loss), trainable)))
                             for loss in ("d_loss", "g_loss")}
        self.sess = self.v1.session()
        self.sess.run(self.v1.init)
        import keras
        keras.utils.set_random_seed(seed)
        self.generator, self.discriminator = rundir.build_models(PRESETS["legacy"])
        self.v2_vars = legacy_variables(self.generator, self.discriminator)
        self.trainer = None

    def copy_v1_to_v2(self):
        for name, value in self.sess.run(self.v1_vars).items():
            self.v2_vars[name].assign(value)

    def v1_values(self):
        return self.sess.run(self.v1_vars)

    def v2_values(self):
        return {name: v.numpy() for name, v in self.v2_vars.items()}

    def v2_forward(self, real, z):
        fake = self.generator(z, training=True)
        real_logits = self.discriminator(real.reshape(-1, 28, 28, 1), training=True)
        fake_logits = self.discriminator(fake, training=True)
        return fake, real_logits, fake_logits


def stage_variables(pair):
    """Counts, names, shapes, trainability and the optimizer split agree; initial values copied exactly."""
    rows = []
    v1_shapes = {n: tuple(v.shape) for n, v in pair.v1_vars.items()}
    v2_shapes = {n: tuple(v.shape) for n, v in pair.v2_vars.items()}
    bad = set(v1_shapes) ^ set(v2_shapes) | {n for n in set(v1_shapes) & set(v2_shapes) if v1_shapes[n] != v2_shapes[n]}
    rows.append(Row("variables", f"names+shapes ({len(v1_shapes)} v1, {len(v2_shapes)} v2)",
                    float(len(bad)), 0.0, 0, 0, not bad and len(v1_shapes) == len(pair.v2_vars)))
    by_id = {id(v): n for n, v in pair.v2_vars.items()}
    trainer = GANTrainer(pair.generator, pair.discriminator, PRESETS["legacy"])
    for side, v1_list, v2_list in (("D", pair.v1.d_vars, trainer.d_variables), ("G", pair.v1.g_vars, trainer.g_variables)):
        names1 = sorted(v.name[:-2] for v in v1_list)
        names2 = sorted(by_id.get(id(v), v.name) for v in v2_list)
        mismatch = set(names1) ^ set(names2)
        rows.append(Row("variables", f"{side} optimizer set ({len(names1)} v1, {len(names2)} v2)",
                        float(len(mismatch)), 0.0, 0, 0, not mismatch and len(names1) == len(names2)))
    pair.trainer = trainer
    v1_values, v2_values = pair.v1_values(), pair.v2_values()
    worst = max((compare("variables", n, v1_values[n], v2_values[n]) for n in v1_values),
                key=lambda r: (not r.ok, r.max_abs))
    rows.append(dataclasses.replace(worst, quantity="initial values after copy (worst)"))
    return rows


def stage_forward_losses_gradients(pair, real, z):
    v1 = pair.v1
    outs = pair.sess.run({"G(z)": v1.Gz, "D(real) prob": v1.D_real, "D(real) logit": v1.D_real_logits,
                          "D(fake) prob": v1.D_fake, "D(fake) logit": v1.D_fake_logits,
                          "d_loss": v1.d_loss, "g_loss": v1.g_loss, "grads": pair.v1_grads}, v1.feed(real, z))
    v2_trainable = {n: pair.v2_vars[n] for n in pair.v1_trainable}
    with tf.GradientTape(persistent=True) as tape:
        fake, real_logits, fake_logits = pair.v2_forward(real, z)
        d_loss, g_loss = losses.get("legacy")(real_logits, fake_logits)
    v2 = {"G(z)": fake, "D(real) prob": tf.sigmoid(real_logits), "D(real) logit": real_logits,
          "D(fake) prob": tf.sigmoid(fake_logits), "D(fake) logit": fake_logits}
    rows = [compare("forward", k, outs[k], v2[k]) for k in v2]
    rows += [compare("losses", "d_loss", outs["d_loss"], d_loss), compare("losses", "g_loss", outs["g_loss"], g_loss)]
    for loss_name, loss in (("d_loss", d_loss), ("g_loss", g_loss)):
        grads = dict(zip(v2_trainable, tape.gradient(loss, list(v2_trainable.values()))))
        for name in pair.v1_trainable:
            rows.append(compare("gradients", f"d {loss_name}/d {name}", outs["grads"][loss_name][name], grads[name]))
    return rows


def stage_training(pair, batches_v1, zs, warmup=WARMUP_D_STEPS):
    """Run len(zs) legacy iterations (the first ``warmup`` D-only) on both sides; worst diff per quantity."""
    v1, sess, trainer = pair.v1, pair.sess, pair.trainer
    worst = {}

    def keep(row):
        old = worst.get(row.quantity)
        if old is None or (not row.ok and old.ok) or (row.ok == old.ok and row.max_abs > old.max_abs):
            worst[row.quantity] = row

    for step, (real, z) in enumerate(zip(batches_v1, zs)):
        feed = v1.feed(real, z)
        real4 = real.reshape(-1, 28, 28, 1)
        _, d1 = sess.run([v1.d_train, v1.d_loss], feed)
        if step < warmup:
            m = trainer.discriminator_step(real4, z)
        else:
            _, g1 = sess.run([v1.g_train, v1.g_loss], feed)
            m = trainer.train_step(real4, z)
            keep(compare("training", "g_loss per step", g1, m["g_loss"]))
        keep(compare("training", "d_loss per step", d1, m["d_loss"]))
        v1_values, v2_values = pair.v1_values(), pair.v2_values()
        for name in v1_values:
            keep(compare("training", name, v1_values[name], v2_values[name]))
    return list(worst.values())


def run(batch_size=128, steps=50, seed=0, data_dir=None, warmup=WARMUP_D_STEPS):
    """All stages; returns the table rows.  ``steps`` counts iterations after the ``warmup`` D-only ones."""
    rng = np.random.default_rng(seed)
    total = warmup + steps
    pixels = real_pixels(data_dir, batch_size * (total + 1), rng)
    batcher = LegacyBatcher(pixels, batch_size, rng)
    pair = Pair(seed)
    pair.copy_v1_to_v2()
    rows = stage_variables(pair)
    rows += stage_forward_losses_gradients(pair, batcher.next_batch(), legacy_z(rng, batch_size))
    batches = [batcher.next_batch() for _ in range(total)]
    zs = [legacy_z(rng, batch_size) for _ in range(total)]
    rows += stage_training(pair, batches, zs, warmup)
    pair.sess.close()
    return rows


def summarize(rows):
    """Rows of the gradient and training stages collapse to the worst per stage in the short table."""
    out = []
    for stage in TOLERANCES:
        stage_rows = [r for r in rows if r.stage == stage]
        if stage in ("gradients", "training") and stage_rows:
            for label, sel in (("all", stage_rows),):
                failed = [r for r in sel if not r.ok]
                w = max(sel, key=lambda r: r.max_abs)
                out.append(dataclasses.replace(w, quantity=f"{w.quantity} (worst of {len(sel)})",
                                               ok=not failed))
                out += [r for r in failed if r is not w]
            if stage == "training":
                out += [r for r in stage_rows if "loss" in r.quantity]
        else:
            out += stage_rows
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m legacy_v1.parity", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", default=None,
                   help="MNIST directory (IDX or mnist_train.csv) for the real batches; default: seeded synthetic images")
    p.add_argument("--batch-size", type=int, default=128, help="images per batch (legacy: 128)")
    p.add_argument("--steps", type=int, default=50,
                   help="training iterations compared after the 30 D-only warm-up steps (also compared)")
    p.add_argument("--seed", type=int, default=0, help="seeds both models' initialisers, data and z")
    p.add_argument("--full", action="store_true", help="print every gradient and variable row, not only the worst")
    args = p.parse_args(argv)
    if args.batch_size <= 0 or args.steps <= 0:
        p.error("--batch-size and --steps must be positive")
    with exit_on_user_error("legacy_v1.parity"):
        rows = run(args.batch_size, args.steps, args.seed, args.data_dir)
    print(HEADER)
    for row in rows if args.full else summarize(rows):
        print(row.line())
    failed = [r for r in rows if not r.ok]
    print(f"{len(rows) - len(failed)}/{len(rows)} checks within tolerance"
          + (f"; FAILED: {', '.join(r.stage + ':' + r.quantity for r in failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
