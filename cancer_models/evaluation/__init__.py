"""Measuring: metrics with group-bootstrap intervals, comparisons between models, acquisition shifts, whether
maps point at lesions, and plots."""
