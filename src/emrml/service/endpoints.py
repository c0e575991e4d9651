"""Placeholder: filled in by the predictions work."""
