"""The Spark engine (``EMRML_ENGINE=spark``, docs/spark.md): the local engine's jobs with their passes over
the data run as the tasks of an Apache Spark application. The units of work, the record reader, the
statistics, the featurizer and the model are the local engine's own; this package only plans where they
run (``runner``), builds the application (``session``) and merges what the tasks return (``datasource``).
"""
