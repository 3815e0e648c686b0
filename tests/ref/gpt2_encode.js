// tests/ref/gpt2_encode.js -- the reference: npm gpt-3-encoder (1.1.4, MIT; a port of
// openai/gpt-2's encoder.py) encodes each file given, one line of space-separated ids per
// file, as tests/tok_tool's "encode" prints them.
//   NODE_PATH=DIR/node_modules node gpt2_encode.js FILE...
// Files are read as UTF-8 (the test feeds only valid UTF-8).
//
// The package's encode() appends with Array.concat, quadratic in a text's tokens (a
// 400 kB file takes minutes), so each file goes to it in chunks of whole pieces of
// GPT-2's pattern (the package's own, copied), cut only after a piece that ends in a
// non-space. Encoding is per piece, and such a run of whole pieces pre-tokenizes alone into
// the same pieces (no lookbehind; the one lookahead, (?!\S), sees the same next character),
// so the ids are those of one call. (A run ending in "\n" + "\n" would not: alone it is one
// piece "\n\n".)
const fs = require('fs');
const { encode } = require('gpt-3-encoder');
const pat = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
for (const f of process.argv.slice(2)) {
  const pieces = fs.readFileSync(f, 'utf-8').match(pat) || [];
  const ids = [];
  let chunk = [];
  const flush = () => { for (const id of encode(chunk.join(''))) ids.push(id); chunk = []; };
  for (const p of pieces) {
    chunk.push(p);
    if (chunk.length >= 512 && !/\s/u.test(p[p.length - 1])) flush();
  }
  flush();
  process.stdout.write(ids.join(' ') + '\n');
}
