"""Evaluation: metrics, calibration, reliability diagrams and the paper-style report."""
