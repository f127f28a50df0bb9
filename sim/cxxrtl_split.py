"""Splitting a CXXRTL model's evaluation function into translation units.

``write_cxxrtl`` writes one ``eval()`` of tens of thousands of lines for the
board network; GCC is superlinear in function size, so :func:`split_eval`
cuts it into chunks of :data:`CHUNK_LINES` lines, each a member function in a
file of its own (compiled in parallel, each flattened), and replaces the
generated ``commit()`` by a branch-free one.  Text in, text out: nothing here
runs a tool.
"""

import re

import numpy as np

__all__ = ["CHUNK_LINES", "split_eval"]

#: Lines of CXXRTL evaluation code per translation unit.
#: Measured on the board network (-O2): 4000 lines per unit cost 150 s of CPU in
#: all, 2000 lines 87 s, 1000 lines 82 s (GCC is superlinear in function size).
CHUNK_LINES = 1500


_DECL = re.compile(r"^\t((?:value|wire)<\d+>) (\w+);$")
_INIT = re.compile(r"^\t(?:auto|(?:value|wire)<\d+>|bool|size_t|[\w:]+) (\w+) = ")
_POSEDGE = re.compile(r"^\tbool (\w+) = this->(\w+)\(\);$")
_WORD = re.compile(r"\b\w+\b")


def _depth_delta(line):
    code = line.split("//", 1)[0]
    return code.count("{") - code.count("}")


_COMMIT_LINE = re.compile(r"^\t\tif \((\w+)\.commit\(observer\)\) changed = true;$")
_PREV_LINE = re.compile(r"^\t\t(prev_\w+) = (\w+);$")


def _fast_commit(header, top_class):
    """Statements of a branch-free ``commit()`` for the model, from the
    generated ``commit(ObserverT &)`` in ``header``; ``None`` if its shape is
    unexpected.  Wires copy ``next`` to ``curr`` unconditionally (the
    generated version branches on every wire, a third of the run time on the
    board network); memories keep their own commit."""
    start = header.find(f"struct {top_class} : public module {{")
    if start < 0:
        return None
    head = "\tbool commit(ObserverT &observer) {\n\t\tbool changed = false;\n"
    a = header.find(head, start)
    if a < 0:
        return None
    b = header.find("\t\treturn changed;\n\t}\n", a)
    if b < 0:
        return None
    mems = set(re.findall(r"\bmemory<\d+> (\w+)\b", header[start:]))
    out = []
    for ln in header[a + len(head):b].splitlines():
        m = _COMMIT_LINE.match(ln)
        if m:
            name = m.group(1)
            out.append(f"\tif ({name}.commit(obs)) changed = true;" if name in mems else
                       f"\tchanged |= se_commit({name});")
            continue
        m = _PREV_LINE.match(ln)
        if m:
            out.append("\t" + ln.strip())
            continue
        return None
    return out


def split_eval(cc, top_class, header="", header_name="design.h", chunk_lines=CHUNK_LINES):
    """Split the ``eval()`` of a CXXRTL model (``write_cxxrtl -header``
    output ``cc``, with ``header`` the matching ``.h`` text) into several
    functions in separate files.

    The locals of ``eval()`` become members of a derived class
    ``{top_class}_split``; that class is what the harness instantiates, and
    the base class's ``eval()`` calls the chunks in order (each is a member
    of the derived class, so the generated statements compile unchanged).
    The derived class also gets a branch-free ``commit()`` (in parts,
    ``commit_<i>.cc``) when the header's commit has the expected shape.
    Returns ``(files, class_name)`` with ``files`` a dict name -> text
    (``design.cc`` rewritten, ``split.h``, ``eval_<i>.cc``, ``commit_<i>.cc``),
    or ``None`` when the code does not have the expected shape (the caller
    then compiles it as one unit).
    """
    lines = cc.split("\n")
    head = f"bool {top_class}::eval(performer *performer) {{"
    try:
        s = lines.index(head)
        e = next(i for i in range(s + 1, len(lines)) if lines[i] == "}")
    except (ValueError, StopIteration):
        return None
    body = lines[s + 1:e]
    if len(body) < 2 or body[0] != "\tbool converged = true;" or \
            body[-1] != "\treturn converged;":
        return None
    prologue, decls, stmts = [], [], []
    depth = 1
    for ln in body[1:-1]:
        if depth == 1 and _POSEDGE.match(ln):
            prologue.append(ln)
            continue
        if depth == 1 and _DECL.match(ln):
            decls.append(ln)
            continue
        if "return" in ln.split("//", 1)[0]:
            return None
        stmts.append(ln)
        depth += _depth_delta(ln)
        if depth < 1:
            return None
    if depth != 1:
        return None
    # statement starts at depth 1; locals declared with an initializer at depth
    # 1 (``auto tmp_1 = ...``) must not be split from their uses
    n = len(stmts)
    starts, first = [], {}
    depth = 1
    for i, ln in enumerate(stmts):
        if depth == 1:
            starts.append(i)
            m = _INIT.match(ln)
            if m:
                first[m.group(1)] = i
        depth += _depth_delta(ln)
    last = dict(first)
    if first:
        for i, ln in enumerate(stmts):
            for w in _WORD.findall(ln.split("//", 1)[0]):
                if w in first:
                    last[w] = i
    blocked = np.zeros(n + 1, dtype=bool)
    for v, f in first.items():
        blocked[f + 1:last[v] + 1] = True
    bounds = [0]
    for i in starts:
        if i == 0 or blocked[i] or stmts[i - 1].lstrip().startswith("//"):
            continue
        if i - bounds[-1] >= chunk_lines and n - i >= chunk_lines // 4:
            bounds.append(i)
    # start chunks at the comment lines that precede a statement
    for k in range(1, len(bounds)):
        b = bounds[k]
        while b > bounds[k - 1] + 1 and stmts[b - 1].lstrip().startswith("//"):
            b -= 1
        bounds[k] = b
    bounds.append(n)
    chunks = [stmts[a:b] for a, b in zip(bounds, bounds[1:])]
    cls = top_class + "_split"
    split_h = [f'#include "{header_name}"', "", "namespace cxxrtl_design {", "",
               f"struct {cls} : public {top_class} {{"]
    split_h += ["\t" + d.strip() for d in decls]
    split_h += [f"\tvoid eval_chunk_{i}(bool &converged, performer *performer);"
                for i in range(len(chunks))]
    commit = _fast_commit(header, top_class) if header else None
    commit_parts = []
    if commit is not None:
        step = max(1, chunk_lines)
        commit_parts = [commit[i:i + step] for i in range(0, len(commit), step)]
        split_h.append("\tbool commit() override;")
        split_h += [f"\tbool commit_part_{i}(cxxrtl::observer &obs);"
                    for i in range(len(commit_parts))]
    split_h += ["};", "", "} // namespace cxxrtl_design", ""]
    new_eval = [head, "\tbool converged = true;",
                f"\t{cls} *self = static_cast<{cls} *>(this);"]
    new_eval += [f"\tself->eval_chunk_{i}(converged, performer);" for i in range(len(chunks))]
    new_eval += ["\treturn converged;", "}"]
    main = "\n".join(lines[:s] + new_eval + lines[e + 1:])
    inc = f'#include "{header_name}"'
    if inc not in main:
        return None
    if commit_parts:
        # commit() itself only calls the parts (it lives in the cold unit)
        main += "\n".join([
            "", "namespace cxxrtl_design {", "",
            f"bool {cls}::commit() {{",
            "\tcxxrtl::observer obs;",
            "\tbool changed = false;",
            *[f"\tchanged |= commit_part_{i}(obs);" for i in range(len(commit_parts))],
            "\treturn changed;", "}", "", "} // namespace cxxrtl_design", ""])
    files = {"design.cc": main.replace(inc, '#include "split.h"', 1),
             "split.h": "\n".join(split_h)}
    prelude = ['#include "split.h"', "", "using namespace cxxrtl_yosys;", "",
               "namespace cxxrtl_design {", ""]
    for i, part in enumerate(commit_parts):
        files[f"commit_{i}.cc"] = "\n".join(prelude + [
            "template<size_t N>",
            "static inline bool se_commit(cxxrtl::wire<N> &w) {",
            "\tbool changed = w.curr != w.next;",
            "\tw.curr = w.next;",
            "\treturn changed;",
            "}", "",
            "__attribute__((flatten))",
            f"bool {cls}::commit_part_{i}(cxxrtl::observer &obs) {{",
            "\tbool changed = false;", *part, "\treturn changed;", "}", "",
            "} // namespace cxxrtl_design", ""])
    for i, ch in enumerate(chunks):
        files[f"eval_{i}.cc"] = "\n".join(
            prelude + ["__attribute__((flatten))",
                       f"void {cls}::eval_chunk_{i}(bool &converged, performer *performer) {{",
                       "\t(void)converged; (void)performer;", *prologue, *ch, "}", "",
                       "} // namespace cxxrtl_design", ""])
    return files, cls
