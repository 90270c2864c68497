"""Rating data: reading and validation, built-in datasets, splits and client partitions."""
