"""The featurizer: a recipe fitted to training data, turning records into sparse feature vectors.

``FeatureSpace.fit(recipe, schema, batches)`` learns what the recipe's outputs need from the training data
— the vocabulary of every categorical and token output, the quantile bin edges of every ``quantile_bin``,
the mean and standard deviation of every ``normalize`` — and then maps data to features two ways that agree
exactly (DESIGN idea 1):

* ``transform(batch)``: an Arrow ``RecordBatch`` of string columns → ``scipy.sparse.csr_matrix``
  (rows × ``n_features``, float64, column indices sorted within each row), vectorized;
* ``transform_record(record)``: one ``{attribute: string}`` record → ``(indices, values)``, plain Python;

and ``product(values(batch), weights)`` gives ``transform(batch) @ weights`` without building the matrix,
which is all that scoring a batch needs. ``record`` compiles the one-record path, ``batch`` holds the
vectorized one (Arrow), ``fitting`` learns from batches (``Fitting``: in parts that merge).

Features per output (names as in spec 6.3; ``docs/recipes.md`` has the full rules):

* NUMERIC (``age``, ``normalize(age)``): the value (raw, or standardised with the training mean and
  population standard deviation), and ``age:missing`` = 1 when the value is missing or invalid, then
  treated as 0 (open question 10). The indicator exists only if training saw a missing or invalid value.
* BINARY (``smoker``): 0/1, and ``smoker:missing`` likewise.
* ``quantile_bin(age,10)``: one-hot over ``quantile_bin(age,10)=bin_0`` … plus ``:missing`` likewise.
* CATEGORICAL (``job``): one-hot ``job=admin.`` over the training vocabulary.
* token sets (TEXT, ``ngram``, ``osb``, ``cartesian``): a binary bag ``ngram(lowercase(review),2)=great
  movie`` — a token repeated in a row counts once.

``fitting.Fitting`` is the fit in parts that merge: the Spark engine fits each part of the data in a task
and merges the parts on the driver.

Unknown categories and tokens are dropped. Zero values are not stored (so a present value of 0 and an
absent feature look the same, as in any sparse vector).
"""

from emrml.core.features.record import record_flag, record_number
from emrml.core.features.space import FeatureSpace

__all__ = ["FeatureSpace", "record_flag", "record_number"]
