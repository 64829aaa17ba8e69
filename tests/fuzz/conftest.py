"""Fuzzing profiles (issue 19): CI runs every fuzz test with a fixed, derandomized number of
examples (tests/fuzz/budget.py); `--hypothesis-profile=long` (or STREAMHOUSE_FUZZ=long) runs them
randomised and far longer, keeping failures in hypothesis's example database. The profiles are
registered here, which pytest loads before the hypothesis plugin reads the option when the run
names tests/fuzz (pytest tests/fuzz --hypothesis-profile=long)."""

from __future__ import annotations

from tests.fuzz.budget import register_profiles

register_profiles()
