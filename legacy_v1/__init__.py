"""The legacy TF1 GAN rebuilt with ``tf.compat.v1`` graphs, bugs included, for parity runs.

Nothing here is meant for new work: ``genmnist`` is the port.  This package
exists so the port can be checked against what the legacy code computed.
"""

Z_DIM = 100  # the legacy noise size: z ~ N(0, 1) of shape [batch, 100]
