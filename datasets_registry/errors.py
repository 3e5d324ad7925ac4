"""Errors raised by the dataset registry.

Malformed label files raise :class:`obbdet.formats.LabelFormatError` (re-exported here), whose one-line
message names the file and the line (or XML element / object index) and quotes the offending text.
Configuration mistakes raise :class:`RegistryConfigError`, naming the config key.
"""
from __future__ import annotations

from obbdet.formats import LabelFormatError

__all__ = ["LabelFormatError", "RegistryConfigError", "UnknownDatasetError"]


class RegistryConfigError(ValueError):
    """A registry config (YAML or dict) that cannot be used; the message names the offending key."""


class UnknownDatasetError(KeyError):
    """A dataset kind that is not registered; the message lists the registered kinds."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""
