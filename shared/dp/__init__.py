"""User-level differential privacy under secure aggregation: Skellam noise, calibration, clipping, accounting."""
