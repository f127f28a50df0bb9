"""The project's expected failures, one base class.

Everything a user can cause (a bad config, a bad dataset, an unwritable output,
a missing or failing tool, a design that does not fit) raises a subclass of
:class:`SparseEdgeError` whose message says what is wrong and what to do.  The
command line turns exactly these into a one-line ``error: ...`` with exit
status 2; anything else is a bug and is reported as one.

This module imports nothing of the package: every layer may use it.
"""

__all__ = ["SparseEdgeError", "ConfigError", "OutputError", "ProtocolError", "CodecError"]


class SparseEdgeError(Exception):
    """An expected failure with a message for the user (one line)."""


class ConfigError(SparseEdgeError, ValueError):
    """An illegal network configuration; the message names the broken rule
    (importable from :mod:`sparse_edge.gen.config` too)."""


class OutputError(SparseEdgeError, OSError):
    """An output file or folder cannot be written (the message names it)."""


class ProtocolError(SparseEdgeError):
    """A malformed message from the other side of the host link (the message
    says what; importable from :mod:`sparse_edge.gen.protocol` too)."""


class CodecError(ProtocolError):
    """Pixel data that cannot be encoded or decoded (the link's sample codec)."""
