"""Saving and loading training state: atomic writes, tensors only, safe to load.

A checkpoint is a plain dict of tensors, numbers, strings and lists, so it loads with
``torch.load(..., weights_only=True)``, which refuses to run code hidden in a pickle. Every
file is written to a temporary name in the same folder and then renamed: a run killed
mid-write leaves the previous checkpoint intact, never half a file.

A weights file (``model.pt``, ``assets/*.pt``, what ``python -m mamlkit export`` writes) holds
``{"format": 1, "config": {...TrainConfig fields...}, "iteration": int, "params": {name:
tensor}, "inner_lrs": {name: tensor} or None}``; a run's ``checkpoint.pt`` holds the same and
the optimiser and sampler state. Files without ``"format"`` are format 1. :func:`load` refuses
with a :class:`~mamlkit.errors.CheckpointError` whose message says what the file is instead:
missing, a folder, empty, cut short, unsafe to unpickle, a bare ``state_dict``, or made by a
newer mamlkit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from mamlkit.errors import CheckpointError

#: The layout of the files this version writes; a file with a larger number is refused.
FORMAT_VERSION = 1
#: Settings a weights file must record so that it can be evaluated.
REQUIRED_SETTINGS = ("n_way", "k_shot", "n_query", "inner_lr", "inner_steps", "eval_inner_steps",
                     "first_order", "channels", "split", "rotate")

HOW_TO_MAKE = (
    "`python -m mamlkit export --run-dir RUN --out FILE` makes one from a training run; for weights "
    "trained elsewhere, `mamlkit.run.checkpoints.save_weights(FILE, params, config)` records them with "
    "the settings they were trained with"
)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates owner-only files; give the result the usual permissions instead.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`atomic_save`, tensors and plain data only.

    Raises:
        CheckpointError: ``path`` is missing, a folder, empty or cut short, not a file
            ``torch.save`` wrote, holds Python objects that ``weights_only=True`` refuses to
            unpickle, is not a dict, or was written by a newer format than
            :data:`FORMAT_VERSION`. The message names the file and says what to do.
    """
    path = Path(path)
    if path.is_dir():
        inside = [name for name in ("model.pt", "checkpoint.pt") if (path / name).is_file()]
        hint = (f"; it holds {' and '.join(inside)}: pass {path / inside[0]}" if inside
                else "; pass the .pt file itself")
        raise CheckpointError(f"{path} is a folder, not a checkpoint file{hint}")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes): this file is not a complete checkpoint; "
                              "copy or download it again")
    if not (head.startswith(b"PK") or head.startswith(b"\x80")):
        # torch.save writes a zip archive (or, in its legacy format, a pickle): neither here.
        raise _not_a_checkpoint(path, head, ValueError(f"it starts with {head!r}"))
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower() or "weights_only" in str(error):
            raise CheckpointError(
                f"{path} holds Python objects other than tensors, numbers and strings, so it was "
                "not loaded: unpickling them could run any code. mamlkit reads only files loadable "
                f"with torch.load(weights_only=True). If you trust the file, re-save its tensors: {HOW_TO_MAKE}"
            ) from error
        raise _not_a_checkpoint(path, head, error) from error
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as error:
        raise _not_a_checkpoint(path, head, error) from error
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not the dict of a mamlkit "
                              f"checkpoint; {HOW_TO_MAKE}")
    version = state.get("format", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} is a checkpoint of format {version!r}, written by a newer mamlkit; this one reads "
            f"format {FORMAT_VERSION} and older. Update mamlkit (git pull; pip install -e .) to load it"
        )
    return state


def _not_a_checkpoint(path: Path, head: bytes, error: BaseException) -> CheckpointError:
    reason = str(error).split("\n")[0].split(". ")[0] or type(error).__name__
    if head.startswith(b"PK") or isinstance(error, EOFError):
        return CheckpointError(
            f"{path}: this file is not a complete checkpoint ({reason}); it was probably cut short "
            "by a failed copy or download: copy it again"
        )
    return CheckpointError(
        f"{path} is not a file torch.save wrote ({reason}); a mamlkit checkpoint "
        f"is a .pt file. {HOW_TO_MAKE}"
    )


def require_weights(state: Mapping, path: str | os.PathLike) -> None:
    """Raise unless ``state`` (from :func:`load`) holds ``config`` and ``params`` to evaluate.

    Raises:
        CheckpointError: ``state`` is a bare ``state_dict`` (``torch.save(model.state_dict())``),
            another program's checkpoint, or lacks some of :data:`REQUIRED_SETTINGS`; the
            message lists what is there, what is missing, and how to make a weights file.
    """
    if "config" in state and "params" in state:
        config = state["config"]
        missing = [name for name in REQUIRED_SETTINGS if not isinstance(config, Mapping) or name not in config]
        if missing:
            raise CheckpointError(f"{path} records no {', '.join(missing)} in its config, which evaluating "
                                  f"needs; {HOW_TO_MAKE}")
        if not isinstance(state["params"], Mapping) or not all(
                isinstance(t, torch.Tensor) for t in state["params"].values()):
            raise CheckpointError(f"{path}: 'params' must map parameter names to tensors")
        return
    keys = list(state)
    shown = ", ".join(map(str, keys[:4])) + (", ..." if len(keys) > 4 else "")
    if keys and all(isinstance(v, torch.Tensor) for v in state.values()):
        what = (f"a plain state dict of {len(keys)} tensors ({shown}), as torch.save(model.state_dict()) "
                "writes, without the settings it was trained with")
    else:
        missing = " and ".join(repr(key) for key in ("config", "params") if key not in state)
        what = f"a dict with the keys {shown} but no {missing}"
    raise CheckpointError(
        f"{path} holds {what}. mamlkit needs a weights file that records the parameters ('params') "
        f"and the settings ('config': n_way, k_shot, inner_lr, ...) together; the command line "
        f"evaluates such files of the Omniglot Conv4 only: {HOW_TO_MAKE}"
    )


def save_weights(path: str | os.PathLike, params: Mapping[str, torch.Tensor], config: Any,
                 inner_lrs: Optional[Mapping[str, torch.Tensor]] = None, iteration: int = 0) -> Path:
    """Write a weights file that ``python -m mamlkit evaluate`` and ``load_weights`` read.

    Args:
        path: the ``.pt`` file to write (atomically).
        params: θ, parameter name -> tensor, e.g. ``dict(model.named_parameters())`` of a
            ``Conv4`` (``model.state_dict()`` also holds batch-norm buffers, which are left out
            here because conv4's batch norm keeps no running statistics).
        config: a ``TrainConfig`` or a dict of its fields, at least :data:`REQUIRED_SETTINGS`.
        inner_lrs: learned per-tensor inner learning rates, if any.
        iteration: how many meta-steps trained these weights.

    Returns:
        ``path``.

    Raises:
        TypeError: ``params`` is not a mapping (e.g. the module itself).
        CheckpointError: ``config`` lacks some of :data:`REQUIRED_SETTINGS`.
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict {{name: tensor}}: pass get_params(model) or the params "
                        f"dict you trained, got {type(params).__name__}")
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    state = {"format": FORMAT_VERSION, "config": dict(config), "iteration": int(iteration),
             "params": {n: t.detach().cpu().clone() for n, t in params.items()},
             "inner_lrs": None if inner_lrs is None else {n: t.detach().cpu().clone() for n, t in inner_lrs.items()}}
    require_weights(state, path)
    return atomic_save(state, path)


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, as recorded in a checkpoint manifest."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
