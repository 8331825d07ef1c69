"""One row of the parity table per compared quantity: the comparisons, the worst-of bookkeeping, the table.

"max rel" is |v1 - v2| / max(|v1|, atol), so elements that are zero up to rounding do not dominate it.
"""

import dataclasses

import numpy as np

from parity.tolerances import TOLERANCES


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
            "and 'rtol' its limit; step rows of weights (g_w*, g_b5, d_*) and wgan-step weight rows: 'max rel' is the "
            "share of elements off by more than 'atol' and 'rtol' its limit")
STAGE_ORDER = list(TOLERANCES) + ["wgan-vars", "wgan-forward", "wgan-losses", "wgan-gradients", "wgan-step",
                                  "wgan-training"]


def compare(stage, quantity, v1_value, v2_value, tolerance=None):
    """Element-wise allclose (NaN must match NaN), with the max abs and max relative differences."""
    rtol, atol = tolerance or TOLERANCES[stage]
    a, b = np.asarray(v1_value, np.float64), np.asarray(v2_value, np.float64)
    if a.shape != b.shape:
        return Row(stage, f"{quantity} shape {a.shape} vs {b.shape}", np.inf, np.inf, rtol, atol, False)
    diff = np.atleast_1d(np.abs(a - b))
    diff[np.atleast_1d((np.isnan(a) & np.isnan(b)) | (a == b))] = 0.0  # matching NaNs and infinities
    rel = diff / np.maximum(np.atleast_1d(np.nan_to_num(np.abs(a))), atol or np.finfo(np.float32).tiny)
    ok = bool(np.all(diff <= atol + rtol * np.abs(np.nan_to_num(a))))
    return Row(stage, quantity, float(diff.max(initial=0)), float(rel.max(initial=0)), rtol, atol, ok)


def compare_share(stage, quantity, v1_value, v2_value, tolerance, bound):
    """'max rel' is the share of elements differing by more than ``atol`` ('rtol': its limit, from
    ``tolerance`` = (atol, share)); fails past that share or when any element differs by more than ``bound``."""
    atol, share = tolerance
    diff = np.abs(np.asarray(v1_value, np.float64) - np.asarray(v2_value, np.float64))
    count = int((diff > atol).sum())
    allowed = max(share * diff.size, 2)  # a 1024-element bias may have a flipped element or two
    return Row(stage, quantity, float(diff.max(initial=0)), count / diff.size, share, atol,
               count <= allowed and float(diff.max(initial=0)) <= bound)


def compare_drift(stage, quantity, v1_value, v2_value, v1_initial, limits=(0.0, 0.0)):
    """'max rel' is the drift ||v1 - v2|| / ||v1 - v1_initial||: how far two runs have parted, relative to
    how far training moved the variable.  Fails past ``limits`` = (max drift, max abs)."""
    moved = np.linalg.norm(v1_value - v1_initial)
    max_abs = float(np.abs(v1_value - v2_value).max())
    drift = float(np.linalg.norm(v1_value - v2_value) / moved) if moved else (np.inf if max_abs else 0.0)
    max_drift, atol = limits
    return Row(stage, quantity, max_abs, drift, max_drift, atol, drift <= max_drift and max_abs <= atol)


def keep_worst(worst, row):
    """Keep, per quantity, the failing row if any, else the one with the largest relative (then absolute) difference."""
    old = worst.get(row.quantity)
    if old is None or (not row.ok and old.ok) or (
            row.ok == old.ok and (row.max_rel, row.max_abs) > (old.max_rel, old.max_abs)):
        worst[row.quantity] = row


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
    return sorted(out, key=lambda r: STAGE_ORDER.index(r.stage))
