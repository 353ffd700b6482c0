"""What keeps a run bit-exact when it is stopped and resumed: per-step seeds, and Ctrl-C between steps.

Random layers (dropout) draw from torch's generator, seeded for each meta-step from the run's seed and
the step's number alone (:func:`step_seed`); Ctrl-C is deferred to the end of the step in progress
(:func:`deferred_interrupt`), so no checkpoint ever holds a half-updated θ.
"""

from __future__ import annotations

import contextlib
import signal
import threading

import torch


def step_seed(seed: int, iteration: int) -> int:
    """The seed of torch's generator during meta-step ``iteration + 1`` of a run with ``seed``.

    A pure function of the two, like :func:`meta_lr_at`: a checkpoint's seed and step count
    are all the random state a resumed run needs for bit-exact dropout masks.
    """
    return (0x5EED_0000 + 1_000_003 * seed + iteration) % 2 ** 63


@contextlib.contextmanager
def seeded_random_layers(seed: int, device: torch.device):
    """Run the body with torch's generator (the CPU's, and ``device``'s) seeded with ``seed``.

    Dropout and other random layers draw from torch's global generator; here it starts from
    ``seed``, and the caller's state of it is restored afterwards (:func:`torch.random.fork_rng`).
    """
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        if devices:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


class _StopRequest:
    requested = False


@contextlib.contextmanager
def deferred_interrupt():
    """Turn the first Ctrl-C into a request (``.requested``) to stop after the current step.

    Stopping in the middle of an optimiser step could save half-updated parameters; stopping
    between steps never does. A second Ctrl-C raises KeyboardInterrupt at once. Outside the
    main thread, where Python delivers no signals, this does nothing.
    """
    stop = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def request_stop(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
