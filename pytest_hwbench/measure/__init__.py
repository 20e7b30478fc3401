"""Measurement: samples kept as numpy arrays, pinned statistics, the machine fingerprint."""
