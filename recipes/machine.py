"""The machine a benchmark ran on, for the CPU line of the benchmark tables, and the --precision option.

Speed (and, through ``precision = "auto"``, GE2E's arithmetic) depends on the CPU's vector and
matrix extensions: AVX-512 with BF16, and AMX, where GE2E's LSTM runs in bfloat16.
"""

from __future__ import annotations

import argparse
import platform

FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")
"""The ``/proc/cpuinfo`` flags named, in this order, when the CPU has them."""


def cpu_features(cpuinfo: str | None = None) -> str:
    """``"<model>; avx2, ..., amx_bf16 (AMX)"`` from ``/proc/cpuinfo`` (or ``cpuinfo``'s text).

    Ends with "(AMX)" or "(no AMX)"; the platform's processor string where there is no cpuinfo.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    model, flags = "", set[str]()
    for line in cpuinfo.splitlines():
        if line.startswith("model name") and not model:
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    have = [f for f in FEATURES if f in flags]
    return f"{model}; {', '.join(have) or 'no AVX2/AVX-512'} ({'AMX' if 'amx_tile' in flags else 'no AMX'})"


def add_precision_option(parser: argparse.ArgumentParser, default: str = "auto", more: str = "") -> None:
    """``--precision`` (GE2E's arithmetic, ``Settings.precision``) on a benchmark's or script's ``parser``."""
    from voicecheck.embedders.base import PRECISIONS

    parser.add_argument(
        "--precision",
        default=default,
        choices=PRECISIONS,
        help="GE2E arithmetic (Settings.precision): auto = what the product picks on this machine (bf16 with AMX, "
        "else fp32)" + more,
    )
