#!/usr/bin/env python3
# tests/cli/make_bars_idx.py PREFIX SEED N: N 8x8 IDX images (PREFIX-images, PREFIX-labels) of
# two classes, a horizontal bar (0) or a vertical bar (1) at a random row/column, with noise.
import struct, sys, random
r = random.Random(int(sys.argv[2])); n = int(sys.argv[3]); H = W = 8
img = bytearray(); lab = bytearray()
for i in range(n):
    c = i % 2; k = r.randrange(1, 7)
    for y in range(H):
        for x in range(W):
            on = (y == k) if c == 0 else (x == k)
            img.append(min(255, (200 if on else 0) + r.randrange(0, 40)))
    lab.append(c)
p = sys.argv[1]
open(p + '-images', 'wb').write(struct.pack('>IIII', 0x803, n, H, W) + img)
open(p + '-labels', 'wb').write(struct.pack('>II', 0x801, n) + lab)
