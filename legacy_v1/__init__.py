"""The legacy TF1 GAN rebuilt with ``tf.compat.v1`` graphs, bugs included, for parity runs.

Nothing here is meant for new work: ``genmnist`` is the port.  This package
exists so the port can be checked against what the legacy code computed.
"""
