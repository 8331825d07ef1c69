"""The two training behaviours per model: ``legacy`` (faithful, bugs included) and ``default`` (fixed).

``--model`` and ``--preset`` pick a :class:`Preset`; flags such as
``--learning-rate`` or ``--loss`` then override single fields.  README.md
explains each field and the measurement behind each default.
"""

import dataclasses

from genmnist import losses


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    model: str                # "dcgan" (legacy GANModel) or "wgan" (legacy WGANModel)
    pixel_range: tuple        # what real images are scaled to before D sees them
    loss: str                 # a key of genmnist.losses.LOSSES
    learning_rate: float
    beta1: float
    beta2: float = 0.999
    adam_epsilon: float = 1e-8  # TF1 AdamOptimizer's default (Keras' is 1e-7)
    train_bn_offsets: bool = True       # legacy: the name-based split leaves bn*/beta untrained
    update_moving_stats: bool = True    # legacy: UPDATE_OPS never ran
    inference_stats: str = "moving"     # legacy: phase=1 at sampling -> batch statistics
    recompute_bn_stats: bool = False    # with "moving": recompute them for the sampled weights first
    bn_momentum: float = 0.999          # contrib batch_norm's decay
    warmup_d_steps: int = 30            # D-only steps before the first G step
    n_critic: int = 1                   # D steps per G step
    clip: float = 0.0                   # WGAN weight clipping bound (0: off)
    gp_weight: float = 0.0              # WGAN-GP penalty weight (0: off)
    legacy_gradient_penalty: bool = False  # legacy: u per element, norm over axis 1 only
    spectral_norm: bool = False         # spectral normalisation on D's layers
    label_smoothing: float = 0.0        # D's target for real images is 1 - this (sigmoid losses)
    ema_decay: float = 0.0              # sample from an exponential moving average of G's weights (0: off)

    @property
    def sampling_stats(self):
        """The batch-norm statistics G samples with: 'batch' (the sampling batch's own),
        'recomputed' (moving ones recomputed for the sampled weights) or 'moving' (as trained)."""
        if self.inference_stats == "batch":
            return "batch"
        return "recomputed" if self.recompute_bn_stats else "moving"

    def with_loss(self, name):
        """Switch the loss and take that loss's usual schedule (critic steps, clipping, penalty)."""
        spec = losses.get(name)
        return dataclasses.replace(self, loss=name, n_critic=spec.n_critic, clip=spec.clip,
                                   gp_weight=spec.gp_weight)

    def replace(self, **changes):
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        data = dict(data)
        data["pixel_range"] = tuple(data["pixel_range"])
        return cls(**data)


PRESETS = {  # the DCGAN-style GANModel, the product's main model
    "legacy": Preset(
        name="legacy", model="dcgan", pixel_range=(0.0, 1.0), loss="legacy", learning_rate=5e-4,
        beta1=0.9, train_bn_offsets=False, update_moving_stats=False, inference_stats="batch"),
    "default": Preset(
        name="default", model="dcgan", pixel_range=(0.0, 1.0), loss="nonsaturating",
        learning_rate=2e-4, beta1=0.5, bn_momentum=0.99, recompute_bn_stats=True),
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

MODELS = {"dcgan": PRESETS, "wgan": WGAN_PRESETS}


def get_preset(model="dcgan", name="default"):
    return MODELS[model][name]
