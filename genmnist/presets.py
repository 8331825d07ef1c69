"""The two training behaviours: ``legacy`` (faithful, bugs included) and ``default`` (fixed).

One switch, ``--preset``, picks a :class:`Preset`; individual flags such as
``--learning-rate`` may then override single fields.  README.md explains each
field and the measurement behind each default.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    pixel_range: tuple        # what real images are scaled to before D sees them
    loss: str                 # a key of genmnist.losses.LOSSES
    learning_rate: float
    beta1: float
    beta2: float = 0.999
    adam_epsilon: float = 1e-8  # TF1 AdamOptimizer's default (Keras' is 1e-7)
    train_bn_offsets: bool = True       # legacy: the name-based split leaves bn*/beta untrained
    update_moving_stats: bool = True    # legacy: UPDATE_OPS never ran
    inference_stats: str = "moving"     # legacy: phase=1 at sampling -> batch statistics
    bn_momentum: float = 0.999          # contrib batch_norm's decay
    warmup_d_steps: int = 30            # D-only steps before the first G step

    def replace(self, **changes):
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        data = dict(data)
        data["pixel_range"] = tuple(data["pixel_range"])
        return cls(**data)


PRESETS = {
    "legacy": Preset(
        name="legacy", pixel_range=(0.0, 1.0), loss="legacy", learning_rate=5e-4, beta1=0.9,
        train_bn_offsets=False, update_moving_stats=False, inference_stats="batch"),
    "default": Preset(
        name="default", pixel_range=(-1.0, 1.0), loss="nonsaturating", learning_rate=2e-4, beta1=0.5,
        bn_momentum=0.99),
}
