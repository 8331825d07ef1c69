"""The two training behaviours per model: ``legacy`` (faithful, bugs included) and ``default`` (fixed).

``--model`` and ``--preset`` pick a :class:`Preset`; flags such as
``--learning-rate`` or ``--loss`` then override single fields.  README.md
explains each field and the measurement behind each default.
"""

import dataclasses
import numbers

# Light on purpose (no TensorFlow): the command lines build their --help from this module.

# Each loss of genmnist.losses (the same keys) with the schedule it brings: critic steps per
# G step, WGAN weight clipping, gradient penalty weight.
LOSS_SCHEDULES = {
    "legacy": {}, "minimax": {}, "nonsaturating": {}, "lsgan": {}, "hinge": {},
    "wgan": {"n_critic": 5, "clip": 0.01},
    "wgan-gp": {"n_critic": 5, "gp_weight": 10.0},
    "legacy-wgan-gp": {"n_critic": 5, "gp_weight": 10.0},
}
USER_LOSSES = ("minimax", "nonsaturating", "lsgan", "wgan", "wgan-gp", "hinge")  # what --loss offers

CONTRIB_BN_DECAY = 0.999  # tf.contrib.layers.batch_norm's moving-average decay, which the legacy code kept

# The batch-norm statistics G samples with: the sampling batch's own (the legacy phase=1), the
# moving averages as trained, or those recomputed for the sampled weights first.
SAMPLING_STATS = ("batch", "moving", "recomputed")
MODEL_NAMES = ("dcgan", "wgan")
# The speed paths a preset may take, by the names of genmnist.speedpaths' deciding functions (the same
# names): a preset's ``speed_paths`` names those on, all by default; none is the straight port.
SPEED_PATHS = ("fused_adam", "fused_batch_norm", "joint_d_pass", "image_conv", "double_backprop")
# The wall time the default preset's run (``run_steps`` of ``run_batch_size``) is sized for, start-up
# and export included, on an idle 2-core CPU; bench/default_run.py times it.
RUN_BUDGET_MINUTES = 15


def rate_text(value):
    """A learning rate as the README, docs and reports write it: 1.2e-3, not 0.0012."""
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


_KINDS = {  # a field's annotation -> whether a value is of that kind (JSON writes 0.0 as 0.0, a hand may write 0)
    str: lambda v: isinstance(v, str), bool: lambda v: isinstance(v, bool), float: _real,
    int: lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool),
    tuple: lambda v: isinstance(v, tuple) and len(v) == 2 and all(map(_real, v)),
    tuple[str, ...]: lambda v: isinstance(v, tuple) and all(isinstance(n, str) for n in v),
}


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    model: str                # "dcgan" (legacy GANModel) or "wgan" (legacy WGANModel)
    pixel_range: tuple        # what real images are scaled to before D sees them
    loss: str                 # a key of LOSS_SCHEDULES and genmnist.losses.LOSSES
    learning_rate: float
    beta1: float
    beta2: float = 0.999
    adam_epsilon: float = 1e-8  # TF1 AdamOptimizer's default (Keras' is 1e-7)
    train_bn_offsets: bool = True       # legacy: the name-based split leaves bn*/beta untrained
    update_moving_stats: bool = True    # legacy: UPDATE_OPS never ran
    sampling_stats: str = "moving"      # G's batch-norm statistics at sampling: see SAMPLING_STATS
    bn_momentum: float = CONTRIB_BN_DECAY
    warmup_d_steps: int = 30            # D-only steps before the first G step
    n_critic: int = 1                   # D steps per G step
    clip: float = 0.0                   # WGAN weight clipping bound (0: off)
    gp_weight: float = 0.0              # WGAN-GP penalty weight (0: off)
    r1_weight: float = 0.0              # R1 penalty gamma: D's loss += gamma / 2 mean ||grad_x D(x)||^2 (0: off)
    penalty_fraction: float = 1.0       # share of each batch the gradient penalty and R1 are computed on
    r1_every: int = 1                   # R1 on every Nth D step only, weighted N times (lazy regularisation)
    d_learning_rate: float = 0.0        # D's Adam rate (0: learning_rate); two time-scale updates when it differs
    lr_decay_steps: int = 0             # both rates fall linearly to 0 over this many G steps (0: constant)
    legacy_gradient_penalty: bool = False  # legacy: u per element, norm over axis 1 only
    spectral_norm: bool = False         # spectral normalisation on D's layers
    label_smoothing: float = 0.0        # D's target for real images is 1 - this (sigmoid losses)
    ema_decay: float = 0.0              # sample from an exponential moving average of G's weights (0: off)
    ema_warmup: float = 10.0            # G step t averages with min(ema_decay, (1 + t) / (ema_warmup + t))
    speed_paths: tuple[str, ...] = SPEED_PATHS  # the speed paths taken (genmnist.speedpaths); (): the straight port
    run_steps: int = 10000              # --steps when not given: the legacy script's length
    run_steps_bfloat16: int = 0         # --steps when not given and the run trains in mixed bfloat16 (0: run_steps)
    run_batch_size: int = 128           # --batch-size when not given: the legacy batch

    def __post_init__(self):
        """Reject a field no run could use (a flag or an edited config.json), naming it."""
        wrong_kind = [f.name for f in dataclasses.fields(self) if not _KINDS[f.type](getattr(self, f.name))]
        if wrong_kind:  # before the checks below compare them
            raise ValueError("invalid preset " + ", ".join(f"{n}={getattr(self, n)!r}" for n in wrong_kind))
        checks = {
            "pixel_range": self.pixel_range[0] < self.pixel_range[1],
            "loss": self.loss in LOSS_SCHEDULES,
            "learning_rate": self.learning_rate > 0, "adam_epsilon": self.adam_epsilon > 0,
            "beta1": 0 <= self.beta1 < 1, "beta2": 0 <= self.beta2 < 1,
            "sampling_stats": self.sampling_stats in SAMPLING_STATS,
            "bn_momentum": 0 <= self.bn_momentum < 1,
            "warmup_d_steps": self.warmup_d_steps >= 0, "n_critic": self.n_critic >= 1,
            "clip": self.clip >= 0, "gp_weight": self.gp_weight >= 0, "r1_weight": self.r1_weight >= 0,
            "penalty_fraction": 0 < self.penalty_fraction <= 1, "r1_every": self.r1_every >= 1,
            "d_learning_rate": self.d_learning_rate >= 0,
            "lr_decay_steps": self.lr_decay_steps >= 0,
            "label_smoothing": 0 <= self.label_smoothing < 1, "ema_decay": 0 <= self.ema_decay < 1,
            "ema_warmup": self.ema_warmup > 1,
            "run_steps": self.run_steps >= 1, "run_steps_bfloat16": self.run_steps_bfloat16 >= 0,
            "run_batch_size": self.run_batch_size >= 1,
            "speed_paths": set(self.speed_paths) <= set(SPEED_PATHS),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            known = f" (speed paths: {', '.join(SPEED_PATHS)})" if "speed_paths" in bad else ""
            raise ValueError("invalid preset " + ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
                             + known)
        # In SPEED_PATHS' order, once each: presets that take the same paths compare equal.
        object.__setattr__(self, "speed_paths", tuple(n for n in SPEED_PATHS if n in self.speed_paths))

    @property
    def has_gradient_penalty(self):
        """Whether D's loss holds a gradient penalty (WGAN-GP, R1): its training step differentiates D's
        gradient to the images again."""
        return bool(self.gp_weight or self.r1_weight)

    @property
    def keeps_reference_arithmetic(self):
        """Whether runs keep TF's own kernels (no reordered sums): the legacy preset for its parity with the
        legacy graph, and gradient-penalty runs, whose double backprop differentiates the image gradient
        again (the reordered one, measured there, was no faster)."""
        return self.name == "legacy" or self.has_gradient_penalty

    def default_steps(self, precision):
        """--steps when not given, for a run that trains in ``precision``: a bfloat16 step is faster where
        ``--precision auto`` picks it, so the same wall budget holds more of them."""
        return self.run_steps_bfloat16 if precision == "mixed_bfloat16" and self.run_steps_bfloat16 else self.run_steps

    @property
    def d_rate(self):
        """D's Adam rate: ``d_learning_rate``, or G's ``learning_rate`` where that is 0 (unset)."""
        return self.d_learning_rate or self.learning_rate

    def with_loss(self, name):
        """Switch the loss and take that loss's usual schedule (critic steps, clipping, penalty): a penalty
        the preset had for its own loss (R1 included, and the share of the batch it is computed on) does not
        carry over (naming the preset's own loss drops it too: a search recipe spells out what it keeps)."""
        if name not in LOSS_SCHEDULES:
            raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSS_SCHEDULES)}")
        unset = {key: Preset.__dataclass_fields__[key].default
                 for key in ("n_critic", "clip", "gp_weight", "r1_weight", "penalty_fraction", "r1_every")}
        schedule = {**unset, **LOSS_SCHEDULES[name]}
        return self.replace(loss=name, **schedule)

    def replace(self, **changes):
        """The preset with these fields changed (None: unchanged). A new ``n_critic`` rescales the default
        run length to the same number of D updates, so a budget-sized run stays inside its budget: under
        wgan-gp's 5 critic steps the default runs a fifth of its iterations."""
        changes = {k: v for k, v in changes.items() if v is not None}
        preset = dataclasses.replace(self, **changes)  # rejects a bad field, n_critic included
        if preset.n_critic == self.n_critic:
            return preset

        def same_d_updates(steps):
            return max(1, round(steps * self.n_critic / preset.n_critic)) if steps else steps
        return dataclasses.replace(preset, **{key: same_d_updates(getattr(self, key))
                                              for key in ("run_steps", "run_steps_bfloat16") if key not in changes})

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        """A preset from ``to_dict``'s output, also as older runs stored it in RUN/config.json
        (two fields, ``inference_stats`` and ``recompute_bn_stats``, for ``sampling_stats``; ``speed_paths``
        as one switch, true for all of them)."""
        data = dict(data)
        for key in ("pixel_range", "speed_paths"):
            if isinstance(data.get(key), list):  # JSON has no tuples
                data[key] = tuple(data[key])
        if isinstance(data.get("speed_paths"), bool):
            data["speed_paths"] = SPEED_PATHS if data["speed_paths"] else ()
        if "inference_stats" in data:
            recompute = data.pop("recompute_bn_stats", False)
            batch = data.pop("inference_stats") == "batch"
            data["sampling_stats"] = "batch" if batch else "recomputed" if recompute else "moving"
        return cls(**data)


PRESETS = {  # the DCGAN-style GANModel, the product's main model
    "legacy": Preset(
        name="legacy", model="dcgan", pixel_range=(0.0, 1.0), loss="legacy", learning_rate=5e-4,
        beta1=0.9, train_bn_offsets=False, update_moving_stats=False, sampling_stats="batch"),
    # The fixes, plus what the quality search (docs/search.md) found covers the digits within
    # RUN_BUDGET_MINUTES on a 2-core CPU: the least-squares loss (the same score as the sigmoid loss
    # about 2000 iterations sooner), the R1 penalty (gamma 5: 10 dropped modes in longer runs) on half of
    # each batch (the same scores as on all of it, and about a tenth of a step's time saved) and on every
    # 4th D update only, weighted 4 times (lazy R1: 9.0 on 3 seeds by 5000 iterations, where R1 on every
    # update needed 6000, at about 0.86 of the iteration's time), D at twice G's rate, Adam without momentum
    # (beta1 0) at rates above DCGAN's and with a shorter second-moment average (beta2 0.99: the last ~100
    # steps' gradient scale), sampling from the weight average, batch 64, rates falling linearly over 10000
    # iterations (without it a seed dropped modes past 4000), and a run length that fits that budget
    # (bench/results/default_run.md): 4000 iterations in float32, 6000 in mixed bfloat16 where --precision
    # auto picks it (a faster step, the same quality per iteration); a run resumed to 10000 carries the same
    # decay on to 0.
    "default": Preset(
        name="default", model="dcgan", pixel_range=(0.0, 1.0), loss="lsgan",
        learning_rate=5e-4, d_learning_rate=1e-3, beta1=0.0, beta2=0.99, bn_momentum=0.99, sampling_stats="recomputed",
        r1_weight=5.0, penalty_fraction=0.5, r1_every=4, ema_decay=0.999, lr_decay_steps=10000, run_steps=4000,
        run_steps_bfloat16=6000, run_batch_size=64),
}

WGAN_PRESETS = {  # the legacy WGANModel: sigmoid generator, so pixels stay in [0, 1]
    "legacy": Preset(
        name="legacy", model="wgan", pixel_range=(0.0, 1.0), loss="legacy-wgan-gp", learning_rate=1e-4,
        beta1=0.5, beta2=0.9, warmup_d_steps=0, n_critic=5, gp_weight=10.0,
        legacy_gradient_penalty=True),
    "default": Preset(
        name="default", model="wgan", pixel_range=(0.0, 1.0), loss="wgan-gp", learning_rate=1e-4,
        beta1=0.5, beta2=0.9, warmup_d_steps=0, n_critic=5, gp_weight=10.0),
}

MODELS = dict(zip(MODEL_NAMES, (PRESETS, WGAN_PRESETS)))


def get_preset(model="dcgan", name="default"):
    return MODELS[model][name]
