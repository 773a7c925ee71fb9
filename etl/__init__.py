"""Spark + Delta Lake ETL that turns raw conversation datasets into a release-grade training dataset."""

__version__ = "0.1.0"
