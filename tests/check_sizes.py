#!/usr/bin/env python3
"""Reports product files over ~800 lines and C functions over ~120 lines (issue 11's aim).

Product code is every .c/.h under the module folders (base/ core/ data/ ckpt/ net/ proto/
obs/ ps/ worker/ cli/ job/ and any other top folder holding a CMakeLists.txt), not tests/,
bench/, fuzz/. A function is a top-level brace block whose opening line looks like a
definition (an identifier followed by a parameter list, not struct/enum/union or an
initialiser); its length counts the lines from the first line of its signature to the
closing brace. Braces inside comments, strings and character literals are ignored.

    check_sizes.py SOURCE_ROOT [--file-limit N] [--func-limit N] [--strict]
        prints the lists; exits 0 (report only) unless --strict and something is over
    check_sizes.py --self-test     checks the scanner on small inputs
"""
import argparse
import os
import re
import sys

SKIP = {'tests', 'bench', 'fuzz', 'build', 'docs', 'examples', 'deploy', 'scripts', 'cmake'}
MODULES = ['base', 'core', 'data', 'ckpt', 'net', 'proto', 'obs', 'ps', 'worker', 'cli', 'job']
# "name(" at the end of a signature, the name not being a keyword that takes parentheses.
CALL = re.compile(r'([A-Za-z_]\w*)\s*\(')
NOT_FUNCS = {'if', 'for', 'while', 'switch', 'return', 'sizeof', 'defined', '__attribute__'}


def product_folders(root):
    found = set()
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name.startswith('.') or name.startswith('build') or name in SKIP:
            continue
        if os.path.isdir(path) and (name in MODULES or
                                    os.path.exists(os.path.join(path, 'CMakeLists.txt'))):
            found.add(name)
    return sorted(found)


def strip_code(text):
    """Returns text with comments, strings and char literals blanked (newlines kept), so
    braces and parentheses in them do not count and line numbers stay the same."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '/' and text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        elif c == '/' and text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i))
            i = j
        elif c in '"\'':
            j = i + 1
            while j < n and text[j] != c and text[j] != '\n':
                j += 2 if text[j] == '\\' else 1
            j = min(j, n)
            out.append(c + re.sub(r'[^\n]', ' ', text[i + 1:j]))
            if j < n and text[j] == c:
                out.append(c)
                j += 1
            i = j
        else:
            out.append(c)
            i += 1
    return ''.join(out)


def strip_preprocessor(code):
    """Blanks preprocessor lines (with their continuations), keeping the newlines."""
    lines, out, cont = code.split('\n'), [], False
    for line in lines:
        if cont or line.lstrip().startswith('#'):
            cont = line.rstrip().endswith('\\')
            out.append('')
        else:
            out.append(line)
    return '\n'.join(out)


def functions(text):
    """Yields (name, first_line, last_line) for each function definition in C source text."""
    code = strip_preprocessor(strip_code(text))
    depth, start, line = 0, 0, 1
    head = []  # top-level text since the last ';' or '}' (the would-be signature)
    head_line = 1
    for c in code:
        if depth == 0:
            if c == '{':
                sig = ''.join(head)
                name = signature_name(sig)
                if name:
                    # The signature starts at its first non-blank line.
                    lead = len(sig) - len(sig.lstrip())
                    start = head_line + sig[:lead].count('\n')
                    pending = name
                else:
                    pending = None
                depth = 1
            elif c in ';}':
                head, head_line = [], line
            else:
                if not head:
                    head_line = line
                head.append(c)
        else:
            if c == '{':
                depth += 1
            elif c == '}':
                depth -= 1
                if depth == 0:
                    if pending:
                        yield pending, start, line
                    head, head_line = [], line
        if c == '\n':
            line += 1


def signature_name(sig):
    """The function's name when sig (the text before a top-level '{') is a definition."""
    s = sig.strip()
    if not s.endswith(')') or '=' in s.split('(')[0]:
        return None
    if re.match(r'^(typedef\s+)?(struct|union|enum)\b[^()]*$', s):
        return None
    names = [m.group(1) for m in CALL.finditer(s) if m.group(1) not in NOT_FUNCS]
    if not names:
        return None
    # The first name followed by '(' is the function (a function-pointer return type is rare
    # enough here to ignore).
    return names[0]


def scan(root, file_limit, func_limit):
    big_files, big_funcs = [], []
    for folder in product_folders(root):
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, folder)):
            dirnames.sort()
            for fn in sorted(filenames):
                if not fn.endswith(('.c', '.h')):
                    continue
                path = os.path.join(dirpath, fn)
                rel = os.path.relpath(path, root)
                with open(path, encoding='utf-8', errors='replace') as f:
                    text = f.read()
                nlines = text.count('\n') + (0 if text.endswith('\n') or not text else 1)
                if nlines > file_limit:
                    big_files.append((nlines, rel))
                if fn.endswith('.c'):
                    for name, a, b in functions(text):
                        if b - a + 1 > func_limit:
                            big_funcs.append((b - a + 1, rel, a, name))
    big_files.sort(key=lambda t: (-t[0], t[1]))
    big_funcs.sort(key=lambda t: (-t[0], t[1], t[2]))
    return big_files, big_funcs


def self_test():
    src = '''#include <stdio.h>
#define BRACE_MACRO { \\
    x }
struct s { int a; };
static const int tab[] = { 1, 2 };
/* } not a brace */
static int f(int a,
             int b)
{
    const char *s = "}{";
    char c = '}';
    if (a) { return b; } // }
    return 0;
}
enum e { A, B };
int g(void) { return 1; }
'''
    got = list(functions(src))
    want = [('f', 7, 14), ('g', 16, 16)]
    if got != want:
        print('self-test FAILED: got %r, want %r' % (got, want))
        return 1
    print('self-test ok')
    return 0


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('root', nargs='?',
                    default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
    ap.add_argument('--file-limit', type=int, default=800)
    ap.add_argument('--func-limit', type=int, default=120)
    ap.add_argument('--strict', action='store_true', help='exit 1 when anything is over')
    ap.add_argument('--self-test', action='store_true')
    a = ap.parse_args(argv[1:])
    if a.self_test:
        return self_test()
    big_files, big_funcs = scan(a.root, a.file_limit, a.func_limit)
    print('product files over %d lines: %d' % (a.file_limit, len(big_files)))
    for n, rel in big_files:
        print('  %5d  %s' % (n, rel))
    print('functions over %d lines: %d' % (a.func_limit, len(big_funcs)))
    for n, rel, start, name in big_funcs:
        print('  %5d  %s:%d  %s' % (n, rel, start, name))
    return 1 if a.strict and (big_files or big_funcs) else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
