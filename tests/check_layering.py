#!/usr/bin/env python3
"""Checks every #include of the product code against the module table of docs/architecture.md.

The table's rows start with a module folder in backticks (`core/`) and end with a
"may include" cell listing, in backticks, the modules it builds on (`base/`) and the
external headers it alone may use (`<zmq.h>`). A module may include its own headers, those
of the modules it lists, and theirs in turn (the list is closed transitively, as linking
is). An external header named in some row is reserved to the modules whose rows name it.
A header named *_internal.h ("data/data_internal.h") belongs to its own module alone.

    check_layering.py SOURCE_ROOT        exit 0 when every include obeys, else 1 naming each
    check_layering.py --self-test        checks that a wrong-way include is caught
"""
import os
import re
import sys
import tempfile

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^">]+)[">]')
FIRST = re.compile(r'^`([a-z_]+)/`$')
TICKS = re.compile(r'`([^`]+)`')
# Folders of product code; tests/, bench/, fuzz/ and the cli (the top) may include anything.
TOP = {'cli', 'tests', 'bench', 'fuzz'}


def read_table(root):
    path = os.path.join(root, 'docs', 'architecture.md')
    deps, externals = {}, {}
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.strip()
            if not line.startswith('|'):
                continue
            cells = [c.strip() for c in line.strip('|').split('|')]
            m = FIRST.match(cells[0])
            if not m or len(cells) < 2:
                continue
            mod, cell = m.group(1), cells[-1]
            deps.setdefault(mod, set())
            for item in TICKS.findall(cell):
                if item.startswith('<'):
                    externals.setdefault(item.strip('<>'), set()).add(mod)
                elif item.endswith('/'):
                    deps[mod].add(item.rstrip('/'))
    if not deps:
        raise SystemExit('%s: no module table (rows like "| `core/` | ... | `base/` |")' % path)
    return deps, externals


def closure(deps):
    full = {}
    for mod in deps:
        seen, todo = set(), list(deps[mod])
        while todo:
            d = todo.pop()
            if d in seen:
                continue
            seen.add(d)
            todo.extend(deps.get(d, ()))
        full[mod] = seen
    return full


def check(root):
    deps, externals = read_table(root)
    allowed = closure(deps)
    problems = []
    for mod in sorted(deps):
        unknown = [d for d in deps[mod] if d not in deps]
        for d in unknown:
            problems.append('docs/architecture.md: %s/ may include %s/, which has no row' % (mod, d))
        folder = os.path.join(root, mod)
        if not os.path.isdir(folder):
            problems.append('docs/architecture.md: module %s/ has no folder' % mod)
            continue
        for dirpath, _, files in os.walk(folder):
            for name in sorted(files):
                if not name.endswith(('.c', '.h')):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                with open(path, encoding='utf-8', errors='replace') as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        kind, target = m.group(1), m.group(2)
                        where = '%s:%d: #include %s%s%s' % (rel, lineno, kind, target,
                                                           '"' if kind == '"' else '>')
                        if kind == '<':
                            users = externals.get(target)
                            if users is not None and mod not in users:
                                problems.append('%s: only %s may include it' %
                                                (where, ', '.join(sorted(u + '/' for u in users))))
                            continue
                        if '..' in target.split('/'):
                            problems.append('%s: no relative paths out of a module' % where)
                            continue
                        if '/' not in target:
                            continue  # a header of the same folder
                        other = target.split('/')[0]
                        if other != mod and target.endswith('_internal.h'):
                            problems.append('%s: only %s/ may include its internal header'
                                            % (where, other))
                            continue
                        if other == mod or other in allowed[mod]:
                            continue
                        if other in deps or other in TOP:
                            problems.append('%s: %s/ may not include %s/ (docs/architecture.md)'
                                            % (where, mod, other))
    for p in problems:
        print(p)
    return 1 if problems else 0


def self_test():
    """A tree with a wrong-way include, a reserved header and a clean module."""
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, 'docs'))
        with open(os.path.join(root, 'docs', 'architecture.md'), 'w') as f:
            f.write('| module | may include |\n|---|---|\n'
                    '| `base/` | libc |\n| `net/` | `base/`, `<zmq.h>` |\n'
                    '| `core/` | `base/` |\n| `ps/` | `core/`, `net/` |\n')
        files = {'base/err.h': '#include <stdio.h>\n',
                 'net/net.c': '#include <zmq.h>\n#include "base/err.h"\n',
                 'core/model.c': '#include "base/err.h"\n#include "net/net.h"\n',
                 'ps/server.c': '#include "base/err.h"\n#include <zmq.h>\n',
                 'ps/coord.c': '#include "core/model.h"\n#include "core/core_internal.h"\n'}
        for rel, text in files.items():
            os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(root, rel), 'w') as f:
                f.write(text)
        import io
        import contextlib
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = check(root)
        text = out.getvalue()
        ok = (rc == 1 and 'core/model.c:2' in text and 'ps/server.c:2' in text and
              'ps/coord.c:2' in text and 'net/net.c' not in text and text.count('\n') == 3)
        print(text, end='')
        print('self-test', 'passed' if ok else 'FAILED')
        return 0 if ok else 1


if __name__ == '__main__':
    if len(sys.argv) == 2 and sys.argv[1] == '--self-test':
        sys.exit(self_test())
    if len(sys.argv) != 2:
        sys.exit('usage: check_layering.py SOURCE_ROOT | --self-test')
    sys.exit(check(sys.argv[1]))
