"""Provenance of a number: which machine, device and software produced it.

One description shared by reports, `reproduce` summaries and the benchmarks."""
from __future__ import annotations

import os
import platform
from importlib import metadata as importlib_metadata

import torch

from winn_robust.version import __version__

REPORTED_PACKAGES = ("torch", "torchvision", "foolbox", "numpy", "scipy", "pandas")


def cpu_name() -> str:
    return platform.processor() or platform.machine()


def machine_description(device: torch.device) -> str:
    """One line for humans: CPU, cores, torch and its threads, the GPU when used."""
    text = f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} using {torch.get_num_threads()} threads"
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text + f", device {device}"


def device_description(device: torch.device) -> dict[str, str]:
    """The device as a JSON record."""
    if device.type == "cuda":
        return {"type": "cuda", "name": torch.cuda.get_device_name(device), "index": str(device.index or 0)}
    return {"type": device.type, "name": cpu_name() or device.type}


def software_versions() -> dict[str, str]:
    versions = {"winn_robust": __version__, "python": platform.python_version()}
    for package in REPORTED_PACKAGES:
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            versions[package] = "not installed"
    versions["cuda"] = str(torch.version.cuda)
    return versions
