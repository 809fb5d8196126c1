"""The CPU's instruction-set class from ``/proc/cpuinfo`` flags, and the INT8 decision per class and model family
(``int8_plan``, ``choose_backend``): pure functions, tested with the flags of every class whatever machine runs them.
"""
from __future__ import annotations

import pytest

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.inference import cpu_features as isa
from ros_mmfusion.core.inference.cpu_features import CpuIsa, cpu_isa, cpuinfo_flags, isa_class, isa_of
from ros_mmfusion.core.inference.int8 import (
    CPU_FORMATS,
    MODEL_FAMILIES,
    OVERRIDE_ENV,
    choose_backend,
    cpu_int8_settings,
    int8_plan,
)

# the flags of this project's two machines (lscpu, 2026-12-06), abridged to what matters plus neighbours
AMD_EPYC_AVX2 = ("fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi1 bmi2 sha_ni vaes vpclmulqdq rdpid fsrm "
                 "clwb xsaveopt").split()
INTEL_AVX512_VNNI = ("fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512cd avx512bw "
                     "avx512vl avx512_vnni avx512_bf16").split()
SKYLAKE_AVX512 = "sse4_2 avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl".split()
ALDER_LAKE = "sse4_2 avx avx2 avx_vnni".split()
SAPPHIRE_RAPIDS = "avx2 avx512f avx512bw avx512_vnni amx_bf16 amx_tile amx_int8".split()
X86_OLD = "sse sse2 ssse3 sse4_1 sse4_2 avx".split()
GRAVITON2 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp".split()
CORTEX_A72 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid".split()

X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse avx avx2 fma
bugs\t\t: sysret_ss_attrs

processor\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse avx avx2 fma
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0c
"""


@pytest.mark.parametrize("flags, machine, expected", [
    (AMD_EPYC_AVX2, "x86_64", isa.X86_AVX2),
    (INTEL_AVX512_VNNI, "x86_64", isa.X86_AVX512_VNNI),
    (SKYLAKE_AVX512, "x86_64", isa.X86_AVX512),
    (ALDER_LAKE, "x86_64", isa.X86_AVX_VNNI),
    (SAPPHIRE_RAPIDS, "x86_64", isa.X86_AMX),
    (X86_OLD, "x86_64", isa.X86_BASELINE),
    (["AVX2", "AVX512_VNNI"], "AMD64", isa.X86_AVX512_VNNI),  # case does not matter
    (["avx512f", "avx2"], "x86_64", isa.X86_AVX2),  # AVX-512 needs avx512bw too for the integer kernels
    (GRAVITON2, "aarch64", isa.ARM64_DOTPROD),
    (CORTEX_A72, "aarch64", isa.ARM64),
    (INTEL_AVX512_VNNI, "aarch64", isa.ARM64),  # x86 flag names mean nothing on another architecture
    (GRAVITON2, "riscv64", isa.UNKNOWN),
])
def test_flags_map_to_one_instruction_set_class(flags, machine, expected):
    assert isa_class(flags, machine) == expected
    assert expected in isa.ISA_CLASSES and CpuIsa(expected).description


def test_cpuinfo_text_gives_the_first_processors_flags_and_model():
    flags, model = cpuinfo_flags(X86_CPUINFO)
    assert flags == {"fpu", "sse", "avx", "avx2", "fma"} and model == "AMD EPYC"
    assert isa_of(X86_CPUINFO, "x86_64") == CpuIsa(isa.X86_AVX2, "AMD EPYC")
    assert isa_of(ARM_CPUINFO, "aarch64") == CpuIsa(isa.ARM64_DOTPROD, "CPU part 0xd0c")
    assert isa_of("", "x86_64").name == isa.X86_BASELINE  # no flags: the lowest class, never a guess upwards


def test_this_machine_s_class_is_read_from_its_cpuinfo():
    import platform
    from pathlib import Path

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    assert cpu_isa().name == isa_of(cpuinfo.read_text(), platform.machine()).name


@pytest.mark.parametrize("name, fmt", [
    (isa.X86_AMX, "u8s8"), (isa.X86_AVX512_VNNI, "u8s8"), (isa.X86_AVX_VNNI, "u8s8"), (isa.ARM64_DOTPROD, "u8s8"),
    (isa.X86_AVX2, "u8s8-rr"), (isa.X86_AVX512, "u8s8-rr"),
])
def test_each_class_gets_the_format_that_is_exact_on_it(name, fmt):
    for model in MODEL_FAMILIES:
        assert int8_plan(model, CpuIsa(name), "").settings.label == fmt
    assert cpu_int8_settings(CpuIsa(name), "").label == fmt


def test_vnni_runs_int8_for_the_cnns_avx2_declines_segmentation_and_navigation_is_declined_everywhere():
    vnni, avx2 = CpuIsa(isa.X86_AVX512_VNNI, "Intel Xeon"), CpuIsa(isa.X86_AVX2, "AMD EPYC")
    for model in ("segmentation", "detection3d"):
        plan = int8_plan(model, vnni, "")
        assert plan.use_int8 and not plan.forced and plan.message().startswith(f"INT8 u8s8 for {model}")
    seg = int8_plan("segmentation", avx2, "")
    assert not seg.use_int8
    assert seg.message().startswith("INT8 declined for segmentation on this CPU (x86 AVX2 without VNNI")
    assert "using fp32 ONNX Runtime" in seg.message() and f"{OVERRIDE_ENV}=u8s8-rr forces INT8" in seg.message()
    det = int8_plan("detection3d", avx2, "")  # measured faster than fp32 and accurate in u8s8-rr
    assert det.use_int8 and det.settings.reduce_range and "saturate" in det.message()
    for cpu in (vnni, avx2, CpuIsa(isa.UNKNOWN)):  # trained ViNT does not localise in INT8 (docs/benchmarks.md)
        nav = int8_plan("navigation", cpu, "")
        assert not nav.use_int8 and "14.5 %" in nav.message()
    assert int8_plan("navigation", avx2, "u8s8-rr").use_int8  # the expert override still forces it
    with pytest.raises(ValueError, match="model family"):
        int8_plan("classification", avx2, "")


def test_the_expert_override_forces_or_declines_and_rejects_unknown_formats(monkeypatch):
    avx2 = CpuIsa(isa.X86_AVX2)
    forced = int8_plan("segmentation", avx2, "u8u8")
    assert forced.use_int8 and forced.forced and forced.settings == CPU_FORMATS["u8u8"]
    off = int8_plan("navigation", CpuIsa(isa.X86_AVX512_VNNI), "off")
    assert not off.use_int8 and f"{OVERRIDE_ENV}=off" in off.message()
    assert int8_plan("segmentation", avx2, "auto") == int8_plan("segmentation", avx2, "")
    with pytest.raises(ConfigError, match="MMFUSION_INT8='u4s4': expected auto, off or one of"):
        int8_plan("segmentation", avx2, "u4s4")
    monkeypatch.setenv(OVERRIDE_ENV, "U8S8")  # read from the environment when not given
    assert int8_plan("segmentation", avx2).settings.label == "u8s8" and int8_plan("segmentation", avx2).use_int8
    assert cpu_int8_settings(avx2).label == "u8s8"


def test_choose_backend_turns_declined_int8_into_fp32_and_leaves_other_backends_alone():
    avx2, vnni = CpuIsa(isa.X86_AVX2), CpuIsa(isa.X86_AVX512_VNNI)
    declined = choose_backend("onnxruntime-int8", "segmentation", "int8", avx2, "")
    assert (declined.backend, declined.precision, declined.declined) == ("onnxruntime", "fp32", True)
    assert declined.log_line() == declined.plan.message()
    kept = choose_backend("onnxruntime-int8", "segmentation", "int8", vnni, "")
    assert (kept.backend, kept.precision, kept.declined) == ("onnxruntime-int8", "int8", False)
    assert "INT8 u8s8" in kept.log_line()
    for backend, precision in (("tensorrt", "int8"), ("onnxruntime", "fp32"), ("torch", "fp32")):
        same = choose_backend(backend, "segmentation", precision, avx2, "")
        assert (same.backend, same.precision, same.plan, same.log_line()) == (backend, precision, None, "")
