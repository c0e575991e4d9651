"""Datasource statistics ("data insights", spec 5.5) computed in one streaming pass with mergeable sketches.

A :class:`StatisticsAccumulator` is fed Arrow record batches of string columns (only the valid records of the
selected split) together with a stable unique key per row. Accumulators built over different partitions of
the data (worker processes, Spark tasks) merge into the accumulator of the whole data: counts, sums, minima,
maxima, means and standard deviations exactly; quantiles, distinct counts and frequent values within the
error of their sketches; the row sample exactly. ``to_bytes``/``from_bytes`` carry the state between
processes as JSON (sketches and the sample as base64 of their own binary forms; never pickle).

Per attribute type (missing and invalid values follow spec 5.3 and open questions 8-10):

* NUMERIC: missing (empty) and invalid counts; exact count/mean/standard deviation/min/max (Chan's parallel
  algorithm). Quantiles, median and histogram are *exact* (quantiles as numpy's default linear
  interpolation) while the attribute has at most 4,096 distinct values: an exact value -> count map, the
  usual case for integer-coded columns, and cheaper to maintain than a quantile sketch. Beyond that a KLL
  sketch (``core.quantiles``, k=200, about 1 % rank error, the same answer on every run) takes over.
* BINARY: counts of 0 and 1, missing and invalid counts.
* CATEGORICAL: empty values count as missing (they are not errors). Frequent values come from a
  frequent-items sketch fed with each batch's aggregated value counts. Up to 1,536 distinct values
  everything is exact: counts, distinct count, least frequent values. Beyond that the distinct count is a
  HyperLogLog estimate (2^14 registers, about 0.8 % standard error), counts are the sketch's estimates,
  least frequent values are unknown, and a batch feeds the sketch only its 256 most frequent values (a
  value's count may then be underestimated by at most the 257th largest count of each batch).
* TEXT: statistics use *normalized* tokens (spec 5.5): lower-cased, split on whitespace, leading and
  trailing punctuation stripped, empty tokens dropped. Empty values count as missing. Unique words are
  counted like categorical values (exact up to 1,536 distinct words).

Correlation to the target is the Miller-Madow bias-corrected mutual information, in nats and clipped at 0,
between a simplified form of the attribute and the target, measured on a deterministic bottom-k row sample
(the ``sample_size`` rows with the smallest splitmix64 hash of their row key, fewer when their values
would pass 16 MiB, as wide text rows do: independent of batch boundaries, order and partitioning).
The target becomes classes: BINARY 0/1, CATEGORICAL values, NUMERIC 10 quantile bins; sampled rows
with a missing or invalid target are left out. Attributes become codes:
NUMERIC 10 quantile bins (values equal to a bin edge, such as a 999 sentinel, apart from the rest of their
bin) plus one code for missing/invalid, BINARY 0/1/missing-or-invalid, CATEGORICAL its
50 most frequent sample values plus "other". A TEXT attribute is scored per word, as the presence of each
of its 50 most frequent words, and its correlation is the highest of those word scores. A TEXT target has
no classes: then every correlation is null.

``result()`` returns (JSON-serializable; ``null`` where a value is undefined, e.g. the mean of an attribute
without valid values)::

    {
      "recordCount": int,                   # rows fed to update()
      "attributeTypeCounts": {"BINARY": int, "CATEGORICAL": int, "NUMERIC": int, "TEXT": int},
      "target": null | {"name": str, "type": str,
                        "distribution": {...},    # the target's per-type fields listed below
                        "entropy": float | null}, # nats, of the target's classes on the correlation
                                                  # sample: the ceiling of every targetCorrelation
      "attributes": [                        # one object per schema attribute, in column order
        {
          "name": str, "type": str,
          "role": "input" | "target" | "rowId" | "rowWeight" | "excluded",
          "missingCount": int,
          "targetCorrelation": float | null,    # input attributes only; null without a usable target
          # NUMERIC
          "invalidCount": int, "validCount": int,
          "min", "max", "mean", "median": float,
          "stddev": float,                      # population standard deviation (ddof=0)
          "quantiles": {"0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99": float | null},
          "histogram": {"edges": [21 floats], "counts": [20 ints]},   # equal width over [min, max];
                                                # one bin [v, v] for a constant, empty without values
          "exact": bool,                        # quantiles/histogram exact (else from the KLL sketch)
          # BINARY
          "invalidCount": int, "counts": {"0": int, "1": int},
          "percentTrue": float | null,          # 100 * ones / (zeros + ones)
          # CATEGORICAL
          "distinctCount": int, "distinctCountExact": bool,
          "topValues": [{"value": str, "count": int}],   # top_k, most frequent first (ties by value)
          "otherCount": int,                    # non-missing values outside topValues
          "leastFrequent": [{"value": str, "count": int}],   # top_k rarest first (ties by value);
                                                # [] unless distinctCountExact
          # TEXT
          "totalWords": int, "uniqueWords": int, "uniqueWordsExact": bool,
          "wordsPerRow": {"min": int, "max": int, "mean": float},   # over all rows, empty ones count 0
          "wordLength": {"min": int, "max": int},                   # in characters
          "prominentWords": [{"word": str, "count": int, "targetCorrelation": float | null}]
                                                # top_k words: by correlation with the target when there
                                                # is one, else by frequency
        }
      ]
    }
"""

from emrml.core.stats.accumulator import StatisticsAccumulator
from emrml.core.stats.columns import normalized_tokens
from emrml.core.stats.constants import QUANTILE_RANKS
from emrml.core.stats.correlation import mutual_information, quantile_codes, target_codes
from emrml.core.stats.sketches import hash_strings, splitmix64

__all__ = [
    "QUANTILE_RANKS",
    "StatisticsAccumulator",
    "hash_strings",
    "mutual_information",
    "normalized_tokens",
    "quantile_codes",
    "splitmix64",
    "target_codes",
]
