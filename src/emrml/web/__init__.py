"""The HTTP face of emrml: the Amazon ML JSON 1.1 API (``protocol``) served by ``server``."""
