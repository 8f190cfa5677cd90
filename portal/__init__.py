"""Lightbox: a browser portal for medical images."""

__version__ = "0.1.0"
