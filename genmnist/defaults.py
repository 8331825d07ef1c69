"""Defaults of the run settings that the command line and the library share, in one module without
TensorFlow (so ``--help`` can show them): how often a run logs and checkpoints, how many checkpoints
it keeps, how many samples an evaluation during training scores."""

LOG_EVERY = 10           # iterations between progress lines, TensorBoard scalars and the NaN check
CHECKPOINT_EVERY = 500   # iterations between checkpoints
KEEP_CHECKPOINTS = 3     # the latest checkpoints a run directory keeps (None: every one)
EVAL_NUM = 2000          # samples each --eval-every evaluation scores
