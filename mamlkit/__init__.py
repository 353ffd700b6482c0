"""mamlkit: the tested code behind the MAML course.

The maths sits here at the top: ``functional`` (a network as a function of θ), ``tasks``,
``losses``, ``inner_loop`` (adaptation on a support set), ``outer_loop`` (θ learned through
it), ``meta_step`` (the one meta-update every algorithm shares), ``fast`` (all tasks at once),
``protocols`` and ``evaluate`` (adaptation at test time). Then, each layer importing only the
ones before it: ``models/``, ``data/``, ``methods/``, ``run/``, ``lessons/``, ``classroom/``.
"""

from mamlkit import _moved

__version__ = "0.1.0"

_moved.install()  # mamlkit.train and the other old paths keep working for one release
