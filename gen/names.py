"""Names: a config's ``name`` and a top module's name must be plain Verilog
identifiers, because they become module names and parts of file names (no
path built from a name can leave its folder).  Description layer."""

import difflib
import re

from .errors import ConfigError

__all__ = ["MAX_NAME", "check_identifier", "suggest_identifier", "short_repr", "did_you_mean"]


def short_repr(value, limit=60):
    """``repr(value)`` cut to ``limit`` characters (error messages stay one line)."""
    r = repr(value)
    return r if len(r) <= limit else r[:limit - 3] + "..."


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Longest name accepted (a config's name, a top module's name).
MAX_NAME = 64
# Verilog-2005 keywords (a top module cannot be called one of these)
_VERILOG_KEYWORDS = frozenset("""
always and assign automatic begin buf bufif0 bufif1 case casex casez cell cmos config
deassign default defparam design disable edge else end endcase endconfig endfunction
endgenerate endmodule endprimitive endspecify endtable endtask event for force forever fork
function generate genvar highz0 highz1 if ifnone incdir include initial inout input instance
integer join large liblist library localparam macromodule medium module nand negedge nmos nor
noshowcancelled not notif0 notif1 or output parameter pmos posedge primitive pull0 pull1
pulldown pullup pulsestyle_ondetect pulsestyle_onevent rcmos real realtime reg release repeat
rnmos rpmos rtran rtranif0 rtranif1 scalared showcancelled signed small specify specparam
strong0 strong1 supply0 supply1 table task time tran tranif0 tranif1 tri tri0 tri1 triand
trior trireg unsigned use uwire vectored wait wand weak0 weak1 while wire wor xnor xor
""".split())


def check_identifier(name, what="name", module=False):
    """``name`` if it is a plain Verilog identifier (letters, digits and
    ``_``, not starting with a digit, at most ``MAX_NAME`` characters; for a
    ``module`` name also not a keyword), else :class:`ConfigError`.  Names
    become module names and parts of file names, so nothing else is accepted
    (no path can be built from a name that escapes its folder)."""
    if not isinstance(name, str):
        raise ConfigError(f"{what} must be a string, not {short_repr(name)}")
    if not _IDENTIFIER.fullmatch(name) or len(name) > MAX_NAME:
        raise ConfigError(f"{what} {short_repr(name)} is not a Verilog identifier: use letters, "
                          f"digits and '_', not starting with a digit, at most {MAX_NAME} "
                          f"characters (e.g. {suggest_identifier(name)!r})")
    if module and name in _VERILOG_KEYWORDS:
        raise ConfigError(f"{what} {name!r} is a Verilog keyword; choose another name "
                          f"(e.g. {name + '_top'!r})")
    return name


def suggest_identifier(name):
    """``name`` made an identifier (for a default, or a hint in a message)."""
    s = re.sub(r"[^A-Za-z0-9_]+", "_", str(name)).strip("_")[:MAX_NAME] or "network"
    return s if not s[0].isdigit() else f"n{s}"[:MAX_NAME]


def did_you_mean(name, known):
    """`` (did you mean 'x'?)`` for the closest of ``known`` to ``name``
    (case-insensitive), or ``""``: the hint of an unknown-name error."""
    close = difflib.get_close_matches(str(name).lower(), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
