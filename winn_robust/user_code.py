"""Importing a function from a user's Python file (FILE.py:FUNCTION), for models to evaluate and
training methods to train: it runs the user's code, by design, and nothing else does."""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from winn_robust.errors import UserError


def split_function_spec(spec: str) -> tuple[Path, str] | None:
    """(FILE, FUNCTION) of `FILE.py:FUNCTION`, or None when `spec` is not of that form."""
    path_part, colon, function = spec.rpartition(":")
    if not colon or not path_part.endswith(".py"):
        return None
    if not function.isidentifier():
        raise UserError(f"{spec}: FUNCTION in FILE.py:FUNCTION must be a Python name, got {function!r}")
    return Path(path_part), function


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def import_function(path: Path, function: str, what: str) -> Callable[..., Any]:
    """FUNCTION from FILE.py, imported as its own module; `what` says what it must be (for the
    one-line errors)."""
    if not path.is_file():
        raise UserError(f"{path} does not exist; FILE.py:FUNCTION needs a Python file that defines {what}")
    module_name = f"winn_robust_user_{abs(hash(str(path.resolve())))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise UserError(f"{path} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        raise UserError(f"importing {path} failed: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}") from None
    found = getattr(module, function, None)
    if not callable(found):
        raise UserError(f"{path} defines no function {function!r}; FILE.py:FUNCTION must name {what}")
    return found
