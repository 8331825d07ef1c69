"""Gradient penalties (WGAN-GP, R1) with their second-order gradient built without the all-zero half.

Why: differentiating ``||grad_x D(x_hat)||`` with respect to D's weights makes TF
backpropagate through D's forward pass as well, because the input gradient reads
that pass's activations as ReLU masks.  TF defines the gradient of a mask input
(``ReluGrad``, ``LeakyReluGrad``, ...) as ``zeros_like``, and the graph then runs
every forward layer's weight and input gradients on those zeros: a third of the
penalty's cost.  Here the penalty is a ``tf.custom_gradient`` whose weight
gradient is ``tf.gradients`` with those mask tensors as ``stop_gradients``: the
same sums, minus the added zeros.  Graph mode only (every training step is a
``tf.function``); eagerly it is the plain nested-tape formula.
"""

import tensorflow as tf

from genmnist import losses

# Inputs whose gradient TF defines as identically zero, by op type.
ZERO_GRADIENT_INPUTS = {"ReluGrad": (1,), "Relu6Grad": (1,), "LeakyReluGrad": (1,),
                        "MaxPoolGrad": (0, 1), "Shape": (0,), "ShapeN": None, "Size": (0,), "Rank": (0,)}


def _depends_on(source, ops):
    """The outputs of ``ops`` (in creation order) that depend on the tensor ``source``."""
    reached = {source.ref()}
    for op in ops:
        if any(t.ref() in reached for t in op.inputs):
            reached.update(t.ref() for t in op.outputs)
    return reached


def _ancestors(tensor, ops):
    """The ops among ``ops`` that ``tensor`` is computed from (tf.gradients also builds unused ones)."""
    candidates, found, stack = set(ops), set(), [tensor.op]
    while stack:
        op = stack.pop()
        if op in candidates and op not in found:
            found.add(op)
            stack.extend(t.op for t in op.inputs)
    return [op for op in ops if op in found]


def _mask_tensors(forward_ops, gradient_ops, x, grads):
    """The forward activations the input gradient reads only where their gradient is zero.

    None when some activation enters elsewhere (a smooth nonlinearity, batch norm):
    then its second-order terms are real and nothing may be cut.
    """
    activations = _depends_on(x, forward_ops)
    masks = {}
    for op in _ancestors(grads, gradient_ops):
        zero = ZERO_GRADIENT_INPUTS.get(op.type, ())
        for i, t in enumerate(op.inputs):
            if t.ref() not in activations or not t.dtype.is_floating:
                continue
            if zero is not None and i not in zero:
                return None
            masks[t.ref()] = t
    return list(masks.values())


def input_gradient(critic, x):
    """grad_x sum(critic(x)) built with ``tf.gradients``, and the activations it reads only as
    masks (None: some are read where their gradient is real)."""
    graph = x.graph
    start = len(graph.get_operations())
    scores = critic(x, training=True)
    middle = len(graph.get_operations())
    grads = tf.gradients(scores, x)[0]
    operations = graph.get_operations()
    return grads, _mask_tensors(operations[start:middle], operations[middle:], x, grads)


def input_gradient_penalty(critic, x, value_of_gradient):
    """``losses.input_gradient_penalty``, differentiable with respect to the critic's variables only
    (the images are constants: the critic step never differentiates the penalty by them)."""
    if tf.executing_eagerly():
        return losses.input_gradient_penalty(critic, x, value_of_gradient)

    @tf.custom_gradient
    def penalty(x):
        grads, masks = input_gradient(critic, x)
        value = value_of_gradient(grads)

        def grad_fn(upstream, variables=None):
            weights = tf.gradients(value, variables, grad_ys=upstream, stop_gradients=masks or [],
                                   unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return None, weights
        return value, grad_fn
    return penalty(tf.stop_gradient(x))


def gradient_penalty(critic, real, fake, u, norm_axes, epsilon=0.0):
    """``losses.gradient_penalty`` with the cheaper double backprop."""
    return input_gradient_penalty(critic, losses.interpolates(real, fake, u),
                                  lambda grads: losses.norm_penalty(grads, norm_axes, epsilon))
