"""What machine made an output, and the arithmetic precision it runs fast: bf16 where the hardware has bf16 matrix
units (CUDA GPUs that support it, CPUs with AVX512-BF16 or AMX), fp32 elsewhere (on a CPU without them bf16 matmul
is emulated and about 5x slower than fp32)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path

PRECISIONS = ("auto", "bf16", "fp32")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "numpy",
    "pandas",
    "scipy",
    "sentence-transformers",
    "accelerate",
    "datasets",
    "scikit-learn",
    "statsmodels",
    "matplotlib",
    "seaborn",
)


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where that file does not exist."""
    path = Path(cpuinfo)
    if not path.is_file():
        return set()
    for line in path.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def has_fast_bf16(device: str, flags: set[str] | None = None) -> bool:
    """Whether bf16 matmul runs natively on this device (not emulated)."""
    import torch

    if device == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device == "cpu":
        flags = cpu_flags() if flags is None else flags
        return any(flag in flags for flag in BF16_CPU_FLAGS)
    return False


def resolve_precision(requested: str, device: str = "cpu", flags: set[str] | None = None) -> str:
    """'bf16' or 'fp32': an explicit choice as given, 'auto' by what the device runs fast."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return requested
    return "bf16" if has_fast_bf16(device, flags) else "fp32"


def hardware_class() -> dict:
    """The properties of this machine that can change floating-point results: torch's CPU kernel capability, the
    bf16 matrix units, and the CUDA device. Two machines with equal classes (and equal libraries) are expected to
    write byte-identical outputs."""
    import torch

    flags = cpu_flags()
    cuda = torch.cuda.is_available()
    return {
        "machine": platform.machine(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16": sorted(flag for flag in BF16_CPU_FLAGS if flag in flags),
        "cuda_device": torch.cuda.get_device_name(0) if cuda else "",
        "cuda_capability": ".".join(map(str, torch.cuda.get_device_capability(0))) if cuda else "",
    }


def library_versions() -> dict:
    """Installed versions of the libraries whose kernels or defaults shape the outputs."""
    versions = {"python": ".".join(map(str, sys.version_info[:3]))}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = ""
    return versions


def fingerprint() -> dict:
    """hardware_class() and library_versions() together, plus the precision `auto` picks here."""
    return {
        "hardware": hardware_class(),
        "libraries": library_versions(),
        "auto_precision_cpu": resolve_precision("auto", "cpu"),
    }
