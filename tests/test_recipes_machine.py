"""Tests for recipes.machine: the CPU line of the benchmark tables and the --precision option."""

from __future__ import annotations

import argparse

import pytest

from recipes.machine import add_precision_option, cpu_features

AMX_CPU = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""


def test_names_the_model_and_the_features_speed_depends_on() -> None:
    line = cpu_features(AMX_CPU)
    assert line == "Intel(R) Xeon(R) Processor; avx2, fma, avx512f, avx512_bf16, avx512_vnni, amx_tile, amx_bf16 (AMX)"


def test_says_when_there_is_no_amx() -> None:
    epyc = "model name\t: AMD EPYC 9B14\nflags\t\t: fpu avx2 fma avx512f avx512_bf16\n"
    assert cpu_features(epyc) == "AMD EPYC 9B14; avx2, fma, avx512f, avx512_bf16 (no AMX)"


def test_a_cpu_without_the_extensions_or_a_model_line_still_gets_a_line() -> None:
    line = cpu_features("flags\t\t: fpu sse sse2\n")
    assert line.endswith("; no AVX2/AVX-512 (no AMX)") and not line.startswith(";")


def test_the_precision_option_takes_the_products_choices_and_no_other() -> None:
    parser = argparse.ArgumentParser()
    add_precision_option(parser, "fp32")
    assert parser.parse_args([]).precision == "fp32"
    assert parser.parse_args(["--precision", "bf16"]).precision == "bf16"
    with pytest.raises(SystemExit):
        parser.parse_args(["--precision", "fp16"])
