"""emrml: a self-hosted Amazon Machine Learning."""

__version__ = "0.1.0"
