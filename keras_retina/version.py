"""The package's version: one leaf module, so any layer (export metadata, run summaries) can read it
without importing the package root, which assembles every layer's public API."""

__version__ = "0.2.0"
