"""Fitting what makes answers trustworthy without retraining: temperature, rejection limits, prediction sets
and the default explanation."""
