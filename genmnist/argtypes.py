"""argparse types that range-check numeric flags, and which flags a command line actually gave.

A value out of range (``--learning-rate -1``, ``--beta1 1``, ``--steps 0``, ``nan``) ends in
argparse's error, exit 2, before anything is loaded or written; :class:`Parser` makes that
error one line, like every other user error of the tools.
"""

import argparse
import math


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block): ``PROG: error: ...; see --help``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}; see --help\n")


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where it says something: not for a default of None (the help says
    what stands in), not for an on/off switch, not where the help already names its default."""

    def _get_help_string(self, action):
        said = any(words in (action.help or "") for words in ("default:", "the default"))
        if action.default is None or isinstance(action.default, bool) or said:
            return action.help
        return super()._get_help_string(action)


def _checked(kind, accept, what):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return value
    parse.__name__ = what  # argparse's fallback message names the type by this
    return parse


positive_int = _checked(int, lambda v: v > 0, "a positive integer")
non_negative_int = _checked(int, lambda v: v >= 0, "0 or a positive integer")
positive_float = _checked(float, lambda v: v > 0, "a positive number")
non_negative_float = _checked(float, lambda v: v >= 0, "0 or a positive number")
fraction = _checked(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
positive_fraction = _checked(float, lambda v: 0 < v <= 1, "a number in (0, 1]")
seed = _checked(int, lambda v: 0 <= v < 2**32, "a seed in 0..4294967295")  # NumPy's seed range


def given_flags(parser, argv=None):
    """{dest: value} of the options ``argv`` spells out; options left at their defaults are not in it."""
    unset = object()
    blank = argparse.Namespace(**dict.fromkeys(vars(parser.parse_args(argv)), unset))
    return {k: v for k, v in vars(parser.parse_args(argv, blank)).items() if v is not unset}
