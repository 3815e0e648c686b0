#!/usr/bin/python3
"""poison_weight.py IN OUT VALUE: a copy of the pstrain model file IN whose first weight of
its first 2-D tensor is VALUE (nan, inf, -inf), as a file some other tool wrote: no producer
and no checksums (a pstrain file's checksums would report corruption first)."""
import json, struct, sys

b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
data = bytearray(b[8 + n:])
meta = h["__metadata__"]
for k in [k for k in meta if k == "producer" or k.startswith("crc32")]:
    del meta[k]
name = next(k for k, v in h.items() if k != "__metadata__" and len(v["shape"]) == 2)
lo = h[name]["data_offsets"][0]
data[lo:lo + 4] = struct.pack("<f", float(sys.argv[3]))
hdr = json.dumps(h).encode()
hdr += b" " * (-len(hdr) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hdr)) + hdr + bytes(data))
