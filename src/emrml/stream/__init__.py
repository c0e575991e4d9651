"""Stream scoring: consumers that score every record of a Kinesis stream (docs/streams.md).

``kinesis`` the client with back-off · ``leases`` shard leases and checkpoints in the metastore ·
``scoring`` micro-batches through batch prediction's featurizer and model · ``outputs`` Kinesis and file
sinks · ``consumer`` the loop of one consumer process (``python -m emrml.stream STREAM_ID``).
"""
