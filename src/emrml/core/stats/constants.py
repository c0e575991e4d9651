"""Settings of the statistics: quantile ranks, bin counts, sketch sizes."""

from __future__ import annotations

import string

import numpy as np

QUANTILE_RANKS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
HISTOGRAM_BINS = 20
MI_BINS = 10
MI_TOP_CATEGORIES = 50
MI_TOP_WORDS = 50
#: Stripped from both ends of a token by the statistics tokenizer.
TOKEN_PUNCTUATION = string.punctuation + "“”‘’«»…–—¡¿"

FORMAT = "emrml-statistics/2"  # 2: numeric sketches are core.quantiles states
EXACT_NUMERIC_LIMIT = 4096
KLL_K = 200
FREQUENT_LG_MAX_MAP = 11
FREQUENT_CAPACITY = 3 << (FREQUENT_LG_MAX_MAP - 2)  # the sketch purges beyond 3/4 of its map
FREQUENT_PER_BATCH = 256
HLL_LG_REGISTERS = 14
#: The most bytes of values the row sample for target correlations holds (rows of 800 bytes fill 20,000).
SAMPLE_BYTES = 16 << 20

U64 = np.uint64
GOLDEN = U64(0x9E3779B97F4A7C15)
MIX1 = U64(0xBF58476D1CE4E5B9)
MIX2 = U64(0x94D049BB133111EB)
POLY_BASE = 0x100000001B3
POLY_BASE_INVERSE = pow(POLY_BASE, -1, 1 << 64)
