"""expmap: reference reproduction of Zhang & Yu (2022), facial expression pattern-maps."""

__version__ = "0.1.0"
