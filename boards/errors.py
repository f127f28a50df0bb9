"""The errors of the board flows: building a board (re-exported by
:mod:`sparse_edge.boards.build`) and talking to one (re-exported by
:mod:`sparse_edge.boards.host`)."""

from ..gen.errors import SparseEdgeError

__all__ = ["BuildError", "ToolNotFound", "BoardDoesNotFit", "BoardError", "PortError",
           "BoardTimeout", "WrongNetwork"]


class BuildError(SparseEdgeError):
    """A board build that cannot be done (the message says why and what to do)."""


class ToolNotFound(BuildError):
    """A tool of the flow is missing."""


class BoardDoesNotFit(BuildError):
    """The design needs more of a resource than the board's FPGA has."""

    def __init__(self, message, over):
        super().__init__(message)
        self.over = over

class BoardError(SparseEdgeError):
    """The board cannot be used as asked (the message says why)."""


class PortError(BoardError):
    """The port does not open."""


class BoardTimeout(BoardError):
    """The board did not answer in time."""


class WrongNetwork(BoardError):
    """The board runs another network than the config describes."""
