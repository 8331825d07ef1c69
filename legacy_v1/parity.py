"""Side-by-side parity of legacy_v1 (tf.compat.v1 graph) and genmnist (Keras 3) in the legacy preset.

``python -m legacy_v1.parity [--data-dir DIR] [--batch-size B] [--steps K] [--seed S]``
prints one row per checked quantity and exits 0 when every row is within
tolerance, 1 otherwise.  Following TensorFlow's migration-validation guide:
both sides are built from one seed, v1's initial weights are copied into v2
(``genmnist.models.legacy_variables``), both are fed identical NumPy z and
real batches, and the check climbs 1 variables -> 2 forward -> 3 losses ->
4 gradients -> 5 one training step at a time (teacher-forced) -> 6 K training
iterations free-running, both after the 30 D-only warm-up steps (every variable
after each step, both losses at each step).

"max rel" is |v1 - v2| / max(|v1|, atol), so elements that are zero up to
rounding do not dominate it.  Tolerances are element-wise
``|v1 - v2| <= atol + rtol * |v1|`` (np.allclose).  They start from the guide's
forward-pass rtol 1e-6 / atol 1e-5 and are tightened to what float32
arithmetic allows here (oneDNN off, grappler's arithmetic and remapping
rewrites off on both sides):

* variables: names, shapes, the optimizer split and the copied values: exact.
* forward, losses (rtol 1e-6, atol 1e-7; TF's migration guide uses atol 1e-5):
  D and the losses run the same kernels in the same order on both sides and
  agree bit for bit (achieved 0).  G(z) differs by rounding only (achieved
  ~1.3e-7): genmnist normalises with the fused batch-norm kernel, v1 with
  tf.nn.moments as contrib batch_norm did.
* gradients (rtol 1e-5, atol 1e-6, a tenth of the migration guide's atol):
  tf.gradients and GradientTape accumulate some sums (bias reductions) in a
  different order, and genmnist's fused batch-norm kernel computes its
  backward pass in closed form, where v1 differentiates tf.nn.moments; float32
  addition is not associative, so sums with cancellation differ (achieved
  <= 3.8e-7 on D biases at batch 128, 8.1e-7 on g_w3 at batch 64).
* step, teacher-forced (before each of the warm-up + K steps v2's weights and
  Adam moments are reset to v1's): one step's arithmetic.  D weights and both
  losses rtol 1e-5 / atol 1e-6 (achieved <= 5e-7).  G weights by share: Adam
  divides by sqrt(v), which turns the gradient's rounding differences on
  near-zero elements into update differences up to lr either way, so at most
  0.1% of a G weight's elements may differ by more than 5e-5 (10% of one Adam
  step, lr 5e-4) and none by more than 2 lr; any real difference (a wrong lr,
  beta, epsilon, z, or schedule) moves most elements by a sizeable fraction of lr.
  g_b1..g_b4 feed a batch norm, which cancels them: their gradient is pure
  rounding noise, so Adam may step them in either direction; atol 2 * lr.
  Untrained variables (bn*/beta, moving statistics) must stay bit-identical.
* training, free-running (each side trains on its own for warm-up + K steps):
  a GAN trained with Adam is chaotic, so any rounding difference grows.  A
  control run of v1 against itself with one D weight nudged by one ulp drifts
  as far as v1 against v2 does (docs/parity.md), so this stage can only
  bound the drift: per trained variable ||v1 - v2|| / ||v1 - v1_initial||
  <= 0.5 (4 for g_b1..g_b4, whose two random walks are independent: ~1.4
  expected, 1.5 measured at K=50, up to 3 in a 6-step test run) and
  max abs <= 5e-2; losses rtol 0.2 / atol 5e-2; untrained variables exact.
  These bounds hold at the default K=50; the teacher-forced stage is the
  precise one.

The achieved numbers are recorded in docs/parity.md.

The WGAN-GP pair (legacy ``WGANModel`` against genmnist's legacy WGAN preset,
penalty bug included) goes through the same stages at batch min(B, 64), with
the interpolation weights u fed to both as NumPy arrays; its gradients pass
through the penalty's double backward pass, whose reordered sums get atol 2e-6.
Its step and training stages run ``--wgan-steps`` legacy WGAN iterations (5
critic steps with fresh z and u on one real batch, then a G step on the last
z); the step stage's weights are checked by share (WGAN_STEP_SHARE below).
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402

from genmnist import argtypes, import_tensorflow  # noqa: E402
from genmnist.presets import PRESETS, WGAN_PRESETS  # noqa: E402

WARMUP_D_STEPS = PRESETS["legacy"].warmup_d_steps


def parse_args(argv=None):
    p = argtypes.Parser(prog="python -m legacy_v1.parity", description=__doc__.split("\n\n")[0],
                        formatter_class=argtypes.DefaultsFormatter)
    p.add_argument("--data-dir", default=None,
                   help="MNIST directory (IDX or mnist_train.csv) for the real batches; "
                        "default: seeded synthetic images")
    p.add_argument("--batch-size", type=argtypes.positive_int, default=128, help="images per batch (legacy: 128)")
    p.add_argument("--steps", type=argtypes.positive_int, default=50,
                   help="training iterations compared after the 30 D-only warm-up steps (also compared)")
    p.add_argument("--seed", type=int, default=0, help="seeds both models' initialisers, data and z")
    p.add_argument("--wgan-steps", type=argtypes.positive_int, default=10,
                   help="WGAN-GP iterations compared in the step and training stages (5 critic steps + 1 G step each)")
    p.add_argument("--warmup-d-steps", type=argtypes.non_negative_int, default=WARMUP_D_STEPS,
                   help="D-only steps before the compared iterations (the legacy schedule's 30)")
    p.add_argument("--control", action="store_true",
                   help="instead of the checks, print the chaos floor: v1 free-running against itself with one "
                        "weight nudged by one ulp, on the same batches")
    p.add_argument("--full", action="store_true", help="print every gradient and variable row, not only the worst")
    return p.parse_args(argv)


if __name__ == "__main__":
    parse_args()  # --help and a mistyped flag answer before TensorFlow loads

import numpy as np  # noqa: E402

tf = import_tensorflow()

_REWRITES = ("arithmetic_optimization", "remapping")


@contextlib.contextmanager
def plain_arithmetic():
    """Grappler's arithmetic rewrites and op fusion off while parity runs, restored after.

    Scoped rather than set at import, so importing this module (the tests do) does
    not change the numerics of everything else in the process.
    """
    saved = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({name: False for name in _REWRITES})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({name: saved.get(name, True) for name in _REWRITES})


from genmnist import losses, rundir  # noqa: E402
from genmnist.errors import exit_on_user_error  # noqa: E402
from genmnist.models import Z_DIM, legacy_variables  # noqa: E402
from genmnist.training import GANTrainer  # noqa: E402
from legacy_v1.batching import LegacyBatcher, legacy_z  # noqa: E402
from legacy_v1.model import GANModel  # noqa: E402

# (rtol, atol) per stage, element-wise; see the module docstring for why.
TOLERANCES = {
    "variables": (0.0, 0.0),
    "forward": (1e-6, 1e-7),
    "losses": (1e-6, 1e-7),
    "gradients": (1e-5, 1e-6),
    "step": (1e-5, 1e-6),      # teacher-forced step: D weights and both losses
    "training": (2e-1, 5e-2),  # free-running: losses per step
}
# WGAN-GP gradients also go through the penalty's double backward pass: more reordered sums
# that cancel (D's conv biases: ~8e-7 on values ~7e-4 at batch 8).
WGAN_GRADIENTS = (1e-5, 2e-6)
# WGAN-GP teacher-forced iteration (5 critic steps, then a G step; lr 1e-4).  Losses: rtol 1e-4.
# The loss compared is the last critic step's, after 4 untethered critic updates in which rounding
# alone moves near-zero-gradient elements by up to lr (below): measured up to 1.9e-5 relative (quick
# mode, batch 16; 7.8e-6 in a full run), while a critic lr 10% off
# moves it by 0.13 (tests/test_parity.py).
# Weights: Adam normalises each gradient element by its own running RMS, so an element whose
# gradient is ~0 steps by up to lr either way on rounding alone; in the 6.4M-element g_w2 a few
# do.  So the check is a share: at most WGAN_STEP_SHARE of a variable's elements (or 2 elements)
# may differ by more than 10% of one Adam step (1e-5), none by more than 2 lr per optimizer step.
# A wrong lr, beta or schedule moves most elements (tests/test_parity.py doubles the critic's lr).
WGAN_STEP_LOSSES = (1e-4, 1e-6)
WGAN_STEP_ATOL = 1e-5
WGAN_STEP_SHARE = 1e-3
STEP_G_SHARE = (5e-5, 1e-3)        # G weights: at most 0.1% of elements off by > 10% of an Adam step
STEP_PRE_BN_BIAS = (0.0, 1e-3)     # 2 lr: a rounding-noise gradient may flip an Adam step's sign
# Free-running training: (max drift ||v1-v2|| / ||v1-v1_0||, max abs diff) per kind of variable.
TRAINING = {"weights": (5e-1, 5e-2), "pre_bn_bias": (4.0, 5e-2)}
# Biases that feed a batch norm: it subtracts them straight back out, so their gradient is pure
# rounding noise, which Adam normalises into lr-sized random steps on each side independently.
PRE_BN_BIASES = {"g_b1", "g_b2", "g_b3", "g_b4"}


def step_tolerance(name):
    """Teacher-forced tolerance for one variable (untrained ones must not move on either side)."""
    if name in PRE_BN_BIASES:
        return STEP_PRE_BN_BIAS
    if name.startswith("bn"):
        return (0.0, 0.0)
    return TOLERANCES["step"]


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
        verdict = "info" if self.stage == "control" else "PASS" if self.ok else "FAIL"
        return (f"{self.stage:<14} {self.quantity:<48} {self.max_abs:9.2e} {self.max_rel:9.2e} "
                f"{self.rtol:7.2g} {self.atol:7.2g}  {verdict}")


HEADER = (f"{'stage':<14} {'quantity':<48} {'max abs':>9} {'max rel':>9} {'rtol':>7} {'atol':>7}  result")
FOOTNOTE = ("training rows of trained variables: 'max rel' is the drift ||v1 - v2|| / ||v1 - v1_initial|| "
            "and 'rtol' its limit; step rows of G weights (g_w*, g_b5) and wgan-step weight rows: 'max rel' is the "
            "share of elements off by more than 'atol' and 'rtol' its limit")


def compare(stage, quantity, v1_value, v2_value, tolerance=None):
    """One table row: element-wise allclose (NaN must match NaN), max abs and max relative diffs."""
    rtol, atol = tolerance or TOLERANCES[stage]
    a, b = np.asarray(v1_value, np.float64), np.asarray(v2_value, np.float64)
    if a.shape != b.shape:
        return Row(stage, f"{quantity} shape {a.shape} vs {b.shape}", np.inf, np.inf, rtol, atol, False)
    diff = np.atleast_1d(np.abs(a - b))
    diff[np.atleast_1d((np.isnan(a) & np.isnan(b)) | (a == b))] = 0.0  # matching NaNs and infinities
    rel = diff / np.maximum(np.atleast_1d(np.nan_to_num(np.abs(a))), atol or np.finfo(np.float32).tiny)
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

    def slot_pairs(self):
        """(v1 Adam slot, Keras Adam slot) for m and v of every trained variable, both optimizers."""
        v1, trainer = self.v1, self.trainer
        name_of = {id(v): n for n, v in self.v2_vars.items()}
        pairs = []
        for v1_opt, v1_vars, k_opt, k_vars in ((v1.d_optimizer, v1.d_vars, trainer.d_optimizer, trainer.d_variables),
                                               (v1.g_optimizer, v1.g_vars, trainer.g_optimizer, trainer.g_variables)):
            by_name = {name_of[id(v)]: v for v in k_vars}
            for var in v1_vars:
                index = k_opt._get_variable_index(by_name[var.name[:-2]])
                pairs.append((v1_opt.get_slot(var, "m"), k_opt._momentums[index]))
                pairs.append((v1_opt.get_slot(var, "v"), k_opt._velocities[index]))
        return pairs

    def sync_v2_from_v1(self, slots):
        """Copy v1's weights and Adam moments into v2 (step counts already agree)."""
        self.copy_v1_to_v2()
        for value, (_, keras_slot) in zip(self.sess.run([s for s, _ in slots]), slots):
            keras_slot.assign(value)

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
    for side, v1_list, v2_list in (("D", pair.v1.d_vars, trainer.d_variables),
                                   ("G", pair.v1.g_vars, trainer.g_variables)):
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


def stage_training(pair, batches_v1, zs, warmup=WARMUP_D_STEPS, forced=False):
    """Run len(zs) legacy iterations (the first ``warmup`` D-only) on both sides.

    Free-running (``forced=False``, stage "training"): each side trains on its
    own.  One row per variable and per loss, the worst step kept.  For trained
    variables "max rel" is the drift ||v1 - v2|| / ||v1 - v1_initial|| (how far
    the two runs have parted, relative to how far training moved the variable);
    untrained variables must stay bit-identical.

    Teacher-forced (``forced=True``, stage "step"): before every step v2's
    weights and Adam moments are reset to v1's, so each row measures one
    step's arithmetic, not the accumulated chaos; compared element-wise.
    """
    v1, sess, trainer = pair.v1, pair.sess, pair.trainer
    slots = pair.slot_pairs() if forced else None
    stage = "step" if forced else "training"
    initial = pair.v1_values()
    trained = {v.name[:-2] for v in v1.d_vars + v1.g_vars}
    worst = {}

    def keep(row):
        keep_worst(worst, row)

    for step, (real, z) in enumerate(zip(batches_v1, zs)):
        if forced:
            pair.sync_v2_from_v1(slots)
        feed = v1.feed(real, z)
        real4 = real.reshape(-1, 28, 28, 1)
        _, d1 = sess.run([v1.d_train, v1.d_loss], feed)
        if step < warmup:
            m = trainer.discriminator_step(real4, z)
        else:
            _, g1 = sess.run([v1.g_train, v1.g_loss], feed)
            m = trainer.train_step(real4, z)
            keep(compare(stage, "g_loss per step", g1, m["g_loss"]))
        keep(compare(stage, "d_loss per step", d1, m["d_loss"]))
        v1_values, v2_values = pair.v1_values(), pair.v2_values()
        if forced:
            for name, a in v1_values.items():
                if name.startswith("g_") and name not in PRE_BN_BIASES:
                    atol, share = STEP_G_SHARE
                    bound = 2 * PRESETS["legacy"].learning_rate
                    keep(compare_share(stage, name, a, v2_values[name], atol, share, bound))
                else:
                    keep(compare(stage, name, a, v2_values[name], step_tolerance(name)))
            continue
        for name, a in v1_values.items():
            if name not in trained:
                keep(compare("training", name, a, v2_values[name], (0.0, 0.0)))
                continue
            moved = np.linalg.norm(a - initial[name])
            max_abs = float(np.abs(a - v2_values[name]).max())
            drift = float(np.linalg.norm(a - v2_values[name]) / moved) if moved else (np.inf if max_abs else 0.0)
            kind = "pre_bn_bias" if name in PRE_BN_BIASES else "weights"
            rdrift, atol = TRAINING[kind]
            keep(Row("training", name, max_abs, drift, rdrift, atol, drift <= rdrift and max_abs <= atol))
    return list(worst.values())


@plain_arithmetic()
def run(batch_size=128, steps=50, seed=0, data_dir=None, warmup=WARMUP_D_STEPS, free_running=True, wgan=True,
        wgan_steps=10):
    """All stages; returns the table rows.  ``steps`` counts iterations after the ``warmup`` D-only ones;
    ``wgan_steps`` the WGAN-GP pair's iterations (5 critic steps and a G step each)."""
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
    rows += stage_training(pair, batches, zs, warmup, forced=True)
    pair.sess.close()
    if free_running:
        pair = Pair(seed)  # a fresh pair, same initial weights, for the free-running run
        pair.copy_v1_to_v2()
        pair.trainer = GANTrainer(pair.generator, pair.discriminator, PRESETS["legacy"])
        rows += stage_training(pair, batches, zs, warmup)
        pair.sess.close()
    if wgan:
        # the legacy WGANModel's batch is 64
        rows += run_wgan(min(batch_size, 64), wgan_steps, seed, data_dir, free_running)
    return rows


class WganPair:
    """The legacy WGANModel graph and genmnist's legacy WGAN preset models, v1's weights copied into v2.

    v2's interpolation weights u come from a variable the caller fills, so both
    sides see the same NumPy u (the legacy per-element draw) at every critic step.
    """

    def __init__(self, batch_size, seed):
        import keras

        from legacy_v1.model import WGANModel
        self.preset = p = WGAN_PRESETS["legacy"]
        self.v1 = WGANModel(batch_size, p.learning_rate, p.beta1, p.beta2, p.gp_weight, seed=seed)
        keras.utils.set_random_seed(seed)
        self.generator, self.critic = rundir.build_models(p)
        self.table = {}
        for scope, model, prefix, count in (("generator", self.generator, "g", 5),
                                            ("discriminator", self.critic, "d", 4)):
            for i in range(1, count + 1):
                layer = model.get_layer(f"{prefix}_{i}")
                layer = getattr(layer, "layer", layer)
                self.table[f"{scope}/{prefix}_w{i}"], self.table[f"{scope}/{prefix}_b{i}"] = layer.kernel, layer.bias
        self.v1_vars = {v.name[:-2]: v for v in self.v1.model_vars}
        self.sess = self.v1.session()
        self.sess.run(self.v1.init)
        self.trainer = self.u = None

    def copy_v1_to_v2(self):
        for name, value in self.sess.run(self.v1_vars).items():
            self.table[name].assign(value)

    def make_trainer(self):
        """A GANTrainer whose penalty weights are read from ``self.u`` [n_critic, b, 28, 28, 1]."""
        self.trainer = GANTrainer(self.generator, self.critic, self.preset)
        self.u = tf.Variable(tf.zeros([self.preset.n_critic, *self.v1.X.shape]))
        self.trainer._interpolation_weights = lambda real: self.u.read_value()

    def slot_pairs(self):
        name_of = {id(v): n for n, v in self.table.items()}
        pairs = []
        for v1_opt, v1_vars, k_opt in ((self.v1.d_optimizer, self.v1.d_vars, self.trainer.d_optimizer),
                                       (self.v1.g_optimizer, self.v1.g_vars, self.trainer.g_optimizer)):
            for var in v1_vars:
                keras_var = self.table[var.name[:-2]]
                assert name_of[id(keras_var)] == var.name[:-2]
                index = k_opt._get_variable_index(keras_var)
                pairs += [(v1_opt.get_slot(var, "m"), k_opt._momentums[index]),
                          (v1_opt.get_slot(var, "v"), k_opt._velocities[index])]
        return pairs

    def iterate(self, real, zs, us):
        """One legacy WGAN iteration on both sides: n_critic critic steps (fresh z and u each, same
        real batch), then a G step on the last z.  Returns (v1 losses, v2 losses), d_loss of the last critic step."""
        v1 = self.v1
        for z, u in zip(zs, us):
            _, d1 = self.sess.run([v1.d_train, v1.d_loss], {v1.X: real, v1.Z: z, v1.U: u})
        _, g1 = self.sess.run([v1.g_train, v1.g_loss], {v1.X: real, v1.Z: zs[-1], v1.U: us[-1]})
        self.u.assign(us)
        m = self.trainer.train_step(tf.constant(real), tf.constant(np.transpose(zs, [1, 0, 2])))
        return (d1, g1), (float(m["d_loss"]), float(m["g_loss"]))


@plain_arithmetic()
def run_wgan(batch_size=64, steps=10, seed=0, data_dir=None, free_running=True):
    """All stages for the WGAN-GP pair (legacy WGANModel against genmnist's legacy WGAN preset).

    The interpolation weights u (drawn per element, the legacy bug) are fed to
    both sides as the same NumPy arrays; the penalty's norm runs over axis 1 on both.
    """
    rng = np.random.default_rng(seed)
    n_critic = WGAN_PRESETS["legacy"].n_critic
    pixels = real_pixels(data_dir, batch_size * (steps + 1), rng).reshape(-1, batch_size, 28, 28, 1)
    z, u = legacy_z(rng, batch_size), rng.random(pixels[0].shape).astype(np.float32)
    zs = rng.standard_normal((steps, n_critic, batch_size, Z_DIM)).astype(np.float32)
    us = rng.random((steps, n_critic, *pixels[0].shape)).astype(np.float32)
    pair = WganPair(batch_size, seed)
    rows = wgan_stages_1_to_3(pair, pixels[0], z, u)
    if any(not r.ok for r in rows if r.stage == "wgan-vars"):
        return rows
    pair.copy_v1_to_v2()
    pair.make_trainer()
    rows += wgan_training(pair, pixels[1:], zs, us, forced=True)
    pair.sess.close()
    if free_running:
        pair = WganPair(batch_size, seed)
        pair.copy_v1_to_v2()
        pair.make_trainer()
        rows += wgan_training(pair, pixels[1:], zs, us, forced=False)
        pair.sess.close()
    return [dataclasses.replace(r, stage="wgan-" + r.stage) if not r.stage.startswith("wgan") else r for r in rows]


def wgan_stages_1_to_3(pair, real, z, u):
    """Variables, forward passes and losses (penalty included), gradients of both losses."""
    v1, table, v1_vars, critic, preset = pair.v1, pair.table, pair.v1_vars, pair.critic, pair.preset
    bad = set(v1_vars) ^ set(table) | {n for n in set(v1_vars) & set(table)
                                       if tuple(v1_vars[n].shape) != tuple(table[n].shape)}
    rows = [Row("wgan-vars", f"names+shapes ({len(v1_vars)} v1, {len(table)} v2)", float(len(bad)), 0.0, 0, 0,
                not bad)]
    if bad:
        return rows
    with v1.graph.as_default():
        grads = {loss: dict(zip(v1_vars, tf.gradients(getattr(v1, loss), list(v1_vars.values()))))
                 for loss in ("d_loss", "g_loss")}
        d_real, d_fake = v1.discriminator(v1.X, reuse=True), v1.discriminator(v1.Gz, reuse=True)
    outs = pair.sess.run({"G(z)": v1.Gz, "D(real)": d_real, "D(fake)": d_fake, "gradient penalty": v1.gradient_penalty,
                          "d_loss": v1.d_loss, "g_loss": v1.g_loss, "grads": grads}, {v1.X: real, v1.Z: z, v1.U: u})
    pair.copy_v1_to_v2()
    with tf.GradientTape(persistent=True) as tape:
        fake = pair.generator(z, training=True)
        real_scores, fake_scores = critic(real, training=True), critic(fake, training=True)
        penalty = losses.gradient_penalty(critic, real, fake, u, [1])
        d_loss, g_loss = losses.get(preset.loss)(real_scores, fake_scores)
        d_loss = d_loss + preset.gp_weight * penalty
    v2 = {"G(z)": fake, "D(real)": real_scores, "D(fake)": fake_scores}
    rows += [compare("forward", f"wgan {k}", outs[k], v2[k]) for k in v2]
    rows += [compare("losses", f"wgan {k}", outs[k], v) for k, v in
             (("gradient penalty", penalty), ("d_loss", d_loss), ("g_loss", g_loss))]
    for loss_name, loss in (("d_loss", d_loss), ("g_loss", g_loss)):
        v2_grads = tape.gradient(loss, [table[n] for n in v1_vars])
        for name, grad in zip(v1_vars, v2_grads):
            grad = np.zeros(table[name].shape, np.float32) if grad is None else grad  # g_loss ignores D's last bias
            rows.append(compare("gradients", f"wgan d {loss_name}/d {name}", outs["grads"][loss_name][name], grad,
                                WGAN_GRADIENTS))
    return rows


def wgan_training(pair, reals, zs, us, forced):
    """Stage 5 (``forced``: v2 reset to v1's weights and Adam moments before every iteration, element-wise
    tolerances) or 6 (free-running, drift bounds) for the WGAN-GP pair; the worst row per quantity."""
    stage = "step" if forced else "training"
    n_critic = pair.preset.n_critic
    slots = pair.slot_pairs() if forced else None
    initial = pair.sess.run(pair.v1_vars)
    worst = {}
    for real, z, u in zip(reals, zs, us):
        if forced:
            pair.copy_v1_to_v2()
            for value, (_, keras_slot) in zip(pair.sess.run([s for s, _ in slots]), slots):
                keras_slot.assign(value)
        (d1, g1), (d2, g2) = pair.iterate(real, z, u)
        tolerance = WGAN_STEP_LOSSES if forced else TOLERANCES["training"]
        for name, a, b in (("d_loss per step", d1, d2), ("g_loss per step", g1, g2)):
            keep_worst(worst, compare(stage, f"wgan {name}", a, b, tolerance))
        v1_values = pair.sess.run(pair.v1_vars)
        for name, a in v1_values.items():
            b = pair.table[name].numpy()
            if forced:
                steps = n_critic if name.startswith("discriminator") else 1
                keep_worst(worst, compare_share(stage, f"wgan {name}", a, b, WGAN_STEP_ATOL, WGAN_STEP_SHARE,
                                                2 * pair.preset.learning_rate * steps))
                continue
            moved = np.linalg.norm(a - initial[name])
            max_abs = float(np.abs(a - b).max())
            drift = float(np.linalg.norm(a - b) / moved) if moved else (np.inf if max_abs else 0.0)
            rdrift, atol = TRAINING["weights"]
            ok = drift <= rdrift and max_abs <= atol
            keep_worst(worst, Row(stage, f"wgan {name}", max_abs, drift, rdrift, atol, ok))
    return list(worst.values())


def compare_share(stage, quantity, v1_value, v2_value, atol, share, bound):
    """A row whose 'max rel' is the share of elements differing by more than ``atol`` ('rtol': its limit);
    fails past that share or when any element differs by more than ``bound``."""
    diff = np.abs(np.asarray(v1_value, np.float64) - np.asarray(v2_value, np.float64))
    count = int((diff > atol).sum())
    allowed = max(share * diff.size, 2)  # a 1024-element bias may have a flipped element or two
    return Row(stage, quantity, float(diff.max(initial=0)), count / diff.size, share, atol,
               count <= allowed and float(diff.max(initial=0)) <= bound)


def keep_worst(worst, row):
    """Keep, per quantity, the failing row if any, else the one with the largest relative (then absolute) difference."""
    old = worst.get(row.quantity)
    if old is None or (not row.ok and old.ok) or (
            row.ok == old.ok and (row.max_rel, row.max_abs) > (old.max_rel, old.max_abs)):
        worst[row.quantity] = row


def control(batch_size=128, steps=50, seed=0, data_dir=None, warmup=WARMUP_D_STEPS):
    """The chaos floor: v1 against itself with one D weight nudged by one float32 ulp.

    Same batches and z as :func:`run`; returns the free-running rows of that
    pair, to set beside v1 against v2.  Not a check: it never fails.
    """
    rng = np.random.default_rng(seed)
    total = warmup + steps
    pixels = real_pixels(data_dir, batch_size * (total + 1), rng)
    batcher = LegacyBatcher(pixels, batch_size, rng)
    batcher.next_batch(), legacy_z(rng, batch_size)  # the batch run() spends on stages 2-4
    batches = [batcher.next_batch() for _ in range(total)]
    zs = [legacy_z(rng, batch_size) for _ in range(total)]
    models = [GANModel(PRESETS["legacy"].learning_rate, PRESETS["legacy"].beta1, seed=seed) for _ in range(2)]
    sessions = [m.session() for m in models]
    for model, sess in zip(models, sessions):
        sess.run(model.init)
    with models[1].graph.as_default():
        weight = next(v for v in models[1].model_vars if v.name == "discriminator/d_w4:0")
        value = sessions[1].run(weight)
        value[0, 0] = np.nextafter(value[0, 0], np.float32(1))
        weight.load(value, sessions[1])
    names = [v.name[:-2] for v in models[0].model_vars]
    trained = {v.name[:-2] for v in models[0].d_vars + models[0].g_vars}
    initial = dict(zip(names, sessions[0].run(models[0].model_vars)))
    worst = {}
    for step, (real, z) in enumerate(zip(batches, zs)):
        losses_ = []
        for model, sess in zip(models, sessions):
            feed = model.feed(real, z)
            d = sess.run([model.d_train, model.d_loss], feed)[1]
            g = sess.run([model.g_train, model.g_loss], feed)[1] if step >= warmup else np.nan
            losses_.append((d, g))
        for i, name in enumerate(("d_loss per step", "g_loss per step")[:1 if step < warmup else 2]):
            row = compare("control", name, losses_[0][i], losses_[1][i], TOLERANCES["training"])
            worst[name] = max(worst.get(name, row), row, key=lambda r: r.max_rel)
        a, b = (dict(zip(names, sess.run(m.model_vars))) for m, sess in zip(models, sessions))
        for name in trained:
            moved = np.linalg.norm(a[name] - initial[name])
            row = Row("control", name, float(np.abs(a[name] - b[name]).max()),
                      float(np.linalg.norm(a[name] - b[name]) / moved) if moved else 0.0, 0.0, 0.0, True)
            worst[name] = max(worst.get(name, row), row, key=lambda r: r.max_rel)
    for sess in sessions:
        sess.close()
    return [worst[n] for n in names if n in worst] + [worst["d_loss per step"], worst["g_loss per step"]]


def summarize(rows):
    """The short table: gradient rows collapse to the worst per loss (plus any failure)."""
    out = [r for r in rows if not r.stage.endswith("gradients")]
    groups = {}
    for r in rows:
        if r.stage.endswith("gradients"):
            groups.setdefault(r.quantity.split("/d ")[0], []).append(r)  # "d d_loss", "wgan d g_loss", ...
    for grads in groups.values():
        w = max(grads, key=lambda r: (not r.ok, r.max_abs))
        out.append(dataclasses.replace(w, quantity=f"{w.quantity} (worst of {len(grads)})",
                                       ok=all(r.ok for r in grads)))
        out += [r for r in grads if not r.ok and r is not w]
    order = list(TOLERANCES) + ["wgan-vars", "wgan-forward", "wgan-losses", "wgan-gradients", "wgan-step",
                                "wgan-training"]
    return sorted(out, key=lambda r: order.index(r.stage))


def main(argv=None):
    args = parse_args(argv)
    if args.control:
        with exit_on_user_error("legacy_v1.parity"):
            rows = control(args.batch_size, args.steps, args.seed, args.data_dir, args.warmup_d_steps)
        print(HEADER)
        for row in rows:
            print(row.line())
        print("control rows: 'max rel' is the drift ||a - b|| / ||a - a_initial|| for weights, "
              "the relative difference for losses")
        return 0
    with exit_on_user_error("legacy_v1.parity"):
        rows = run(args.batch_size, args.steps, args.seed, args.data_dir, args.warmup_d_steps,
                   wgan_steps=args.wgan_steps)
    print(HEADER)
    for row in rows if args.full else summarize(rows):
        print(row.line())
    print(FOOTNOTE)
    failed = [r for r in rows if not r.ok]
    print(f"{len(rows) - len(failed)}/{len(rows)} checks within tolerance"
          + (f"; FAILED: {', '.join(r.stage + ':' + r.quantity for r in failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
