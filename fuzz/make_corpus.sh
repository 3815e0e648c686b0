#!/usr/bin/env bash
# fuzz/make_corpus.sh BUILD_FUZZ_DIR PSTRAIN [CKPT_CRASH_WRITER]
# Regenerates the seed corpora fuzz/corpus/<harness>/ from valid inputs: real packed
# envelopes (make_corpus_wire from the fuzz build), small IDX files (plain and gzip), CSV
# and libsvm files cut from examples/data, the example jobs, and safetensors files written
# by pstrain (a model and an optimizer checkpoint of a short examples/binary-moons.yaml run,
# copies of them without checksums, and a server shard file from tests/ckpt_crash_writer).
# The seeds are committed; rerun this after a format change.
set -euo pipefail
bf=$(cd "$1" && pwd); pstrain=$(realpath "$2"); writer=${3:+$(realpath "$3")}
cd "$(dirname "$0")"
C=corpus
rm -rf "$C"
mkdir -p $C/fuzz_wire $C/fuzz_idx $C/fuzz_csv $C/fuzz_libsvm $C/fuzz_config $C/fuzz_ckpt

"$bf/make_corpus_wire" $C/fuzz_wire

/usr/bin/python3 - "$C" ../examples/data <<'PY'
import gzip, os, struct, sys
C, data = sys.argv[1], sys.argv[2]

def idx_images(n, r, c):
    return struct.pack(">IIII", 0x803, n, r, c) + bytes((i * 37) % 256 for i in range(n * r * c))

def idx_labels(n, k):
    return struct.pack(">II", 0x801, n) + bytes(i % k for i in range(n))

def idx_seed(name, ncls, img, lab):
    with open(f"{C}/fuzz_idx/{name}", "wb") as f:
        f.write(bytes([ncls]) + struct.pack("<H", len(img)) + img + lab)

idx_seed("plain", 10, idx_images(4, 3, 3), idx_labels(4, 10))
idx_seed("auto_classes", 0, idx_images(3, 2, 2), idx_labels(3, 3))
idx_seed("gzip", 10, gzip.compress(idx_images(5, 4, 4), mtime=0),
         gzip.compress(idx_labels(5, 10), mtime=0))
idx_seed("mixed", 0, gzip.compress(idx_images(2, 2, 3), mtime=0), idx_labels(2, 2))

def lines(path, n):
    with open(path) as f:
        return "".join(f.readline() for _ in range(n))

moons = lines(f"{data}/moons.csv", 8)
reg = lines(f"{data}/regression.csv", 6)
csv = {
    # option byte: bits 0-1 delimiter, 2-3 header, 4-5 label, 6 regress, 7 nclasses 3
    "moons_by_name": (0x30 | 0x08, moons),
    "moons_guess": (0x00, moons),
    "regression": (0x40 | 0x30 | 0x08, reg),
    "strings": (0x04, "1.5,2,cat\n3,4.25,dog\n-1,0,cat\n\n5e-3,7,bird\n"),
    "semicolon_first": (0x01 | 0x04 | 0x10, "2;0.5;1\n0;1.5;-2\n1;3;4\n"),
    "tab_nolabel": (0x02 | 0x20, "1\t2\t3\n4\t5\t6\n"),
    "quoted": (0x08 | 0x30, 'a,"b",label\n1,2,x\n3,4,"y"\n'),
}
for name, (opt, text) in csv.items():
    with open(f"{C}/fuzz_csv/{name}", "wb") as f:
        f.write(bytes([opt]) + text.encode())

svm = {
    # option byte: bits 0-3 dim (0 = largest index), bit 4 regress, bit 5 nclasses 3
    "binary": (0, "+1 1:0.5 3:1.25\n-1 2:-3 4:1e-2\n+1 1:1\n"),
    "multiclass_dim": (5 | 0x20, "0 1:1 2:2\n2 5:0.5 # comment\n1 3:3\n"),
    "regression": (0x10, "1.5 1:2 2:3\n-0.25 2:1\n3e2 1:0 3:9\n"),
}
for name, (opt, text) in svm.items():
    with open(f"{C}/fuzz_libsvm/{name}", "wb") as f:
        f.write(bytes([opt]) + text.encode())
PY

cp ../examples/*.yaml $C/fuzz_config/

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
OPENBLAS_NUM_THREADS=1 "$pstrain" train ../examples/binary-moons.yaml --epochs 1 \
  --output "$tmp/run" --checkpoint.every_steps 10 > /dev/null 2>&1
ck=$(ls -d "$tmp"/run/checkpoints/ckpt-* | head -1)
cp "$tmp/run/model.safetensors" $C/fuzz_ckpt/model.safetensors
cp "$ck/optimizer.safetensors" $C/fuzz_ckpt/optimizer.safetensors
if [ -n "$writer" ]; then
  "$writer" once "$tmp/shard" 1 7 > /dev/null
  cp "$tmp"/shard/server-1-clock-7.safetensors $C/fuzz_ckpt/shard.safetensors
fi
# The same files as another writer would leave them: producer not "pstrain", no checksums,
# so that mutated tensor bytes get past the (unit-tested) checksum checks.
/usr/bin/python3 - $C/fuzz_ckpt <<'PY'
import json, os, struct, sys
d = sys.argv[1]
for name in sorted(os.listdir(d)):
    b = open(os.path.join(d, name), "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    md = h.get("__metadata__", {})
    md = {k: v for k, v in md.items() if not k.startswith("crc32.")}
    md["producer"] = "fuzz-seed"
    h["__metadata__"] = md
    hb = json.dumps(h, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    out = os.path.join(d, "nocrc-" + name)
    open(out, "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])
PY
echo "make_corpus: $(find $C -type f | wc -l) seeds in fuzz/corpus"
