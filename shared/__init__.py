"""fedrec's shared package: data, MF math, secure-aggregation primitives, configuration and metrics."""
