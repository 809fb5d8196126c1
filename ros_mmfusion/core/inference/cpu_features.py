"""The CPU's instruction-set class, as far as 8-bit integer inference cares (ROS-free).

ONNX Runtime's integer kernels differ by instruction set: with VNNI (``avx512_vnni`` or ``avx_vnni``) or AMX
(``amx_int8``) an unsigned-by-signed 8-bit product is accumulated exactly in 32 bits; on AVX2 or AVX-512 without VNNI
the U8S8 kernels use ``vpmaddubsw``, which adds two products in a saturating 16-bit lane, so large activations times
large weights saturate; on aarch64 the dot-product extension (``asimddp``: ``sdot``/``udot``) gives exact 8-bit dot
products. :func:`isa_class` maps a set of ``/proc/cpuinfo`` flags to one class, a pure function that tests can give
any CPU's flags; :func:`cpu_isa` reads this machine's.
"""
from __future__ import annotations

import contextlib
import functools
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

X86_AMX = "x86-amx"
X86_AVX512_VNNI = "x86-avx512-vnni"
X86_AVX_VNNI = "x86-avx-vnni"
X86_AVX512 = "x86-avx512"
X86_AVX2 = "x86-avx2"
X86_BASELINE = "x86-sse"
ARM64_DOTPROD = "arm64-dotprod"
ARM64 = "arm64"
UNKNOWN = "unknown"

ISA_CLASSES = (X86_AMX, X86_AVX512_VNNI, X86_AVX_VNNI, X86_AVX512, X86_AVX2, X86_BASELINE, ARM64_DOTPROD, ARM64,
               UNKNOWN)
"""Every class :func:`isa_class` returns, best first within each architecture."""

DESCRIPTIONS = {
    X86_AMX: "x86 with AMX-INT8 (and VNNI)",
    X86_AVX512_VNNI: "x86 AVX-512 with VNNI",
    X86_AVX_VNNI: "x86 AVX2 with AVX-VNNI",
    X86_AVX512: "x86 AVX-512 without VNNI",
    X86_AVX2: "x86 AVX2 without VNNI",
    X86_BASELINE: "x86 without AVX2",
    ARM64_DOTPROD: "aarch64 with the dot-product extension (asimddp)",
    ARM64: "aarch64 without the dot-product extension",
    UNKNOWN: "unknown architecture",
}

_X86 = ("x86_64", "amd64", "i386", "i686", "x86")
_ARM64 = ("aarch64", "arm64")


@dataclass(frozen=True)
class CpuIsa:
    """``name``: one of ``ISA_CLASSES``; ``model``: the CPU model name (``lscpu``'s "Model name"), for records."""

    name: str
    model: str = ""

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.name]

    def __str__(self) -> str:
        return f"{self.name} ({self.description}{', ' + self.model if self.model else ''})"


def isa_class(flags: Iterable[str], machine: str = "x86_64") -> str:
    """The class (one of ``ISA_CLASSES``) of a CPU with the ``/proc/cpuinfo`` ``flags`` (x86) or ``Features``
    (aarch64), on ``platform.machine()`` ``machine``."""
    have = {f.strip().lower() for f in flags}
    arch = machine.lower()
    if arch in _X86:
        if "amx_int8" in have:
            return X86_AMX
        if "avx512_vnni" in have:
            return X86_AVX512_VNNI
        if "avx_vnni" in have:
            return X86_AVX_VNNI
        if {"avx512f", "avx512bw"} <= have:
            return X86_AVX512
        if "avx2" in have:
            return X86_AVX2
        return X86_BASELINE
    if arch in _ARM64:
        return ARM64_DOTPROD if "asimddp" in have else ARM64
    return UNKNOWN


def cpuinfo_flags(text: str) -> tuple[frozenset[str], str]:
    """``(flags, model name)`` of the first processor in the text of ``/proc/cpuinfo`` (x86 ``flags``, aarch64
    ``Features``; model from ``model name``, else ``CPU part`` on aarch64)."""
    flags: frozenset[str] | None = None
    model = ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key in ("flags", "features") and flags is None:
            flags = frozenset(value.split())
        elif key == "model name" and not model:
            model = value.strip()
        elif key == "cpu part" and not model:
            model = f"CPU part {value.strip()}"
    return flags or frozenset(), model


def isa_of(cpuinfo: str, machine: str) -> CpuIsa:
    """The :class:`CpuIsa` described by the text of ``/proc/cpuinfo`` on ``machine``."""
    flags, model = cpuinfo_flags(cpuinfo)
    return CpuIsa(isa_class(flags, machine), model)


@functools.lru_cache(maxsize=1)
def cpu_isa() -> CpuIsa:
    """This machine's class (``/proc/cpuinfo``; without it, the architecture alone: no flags, the lowest class)."""
    text = ""
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text()
    isa = isa_of(text, platform.machine())
    return isa if isa.model else CpuIsa(isa.name, platform.processor() or platform.machine())
