#!/usr/bin/env bash
# Help, version, usage errors and their exit codes.
source "$(dirname "$0")/lib.sh"

expect_exit 0 "$PSTRAIN" --help;          expect_in out.txt "usage: pstrain"
expect_exit 0 "$PSTRAIN" --version;       expect_in out.txt "^pstrain [0-9]+\.[0-9]+\.[0-9]+"
expect_exit 0 "$PSTRAIN" train --help;    expect_in out.txt "usage: pstrain train"
expect_in out.txt "optimizer.lr"
expect_exit 2 "$PSTRAIN";                 expect_in err.txt "usage"
expect_exit 2 "$PSTRAIN" frobnicate;      expect_in err.txt "unknown command 'frobnicate'"
expect_exit 2 "$PSTRAIN" train --no-such-flag 1; expect_in err.txt "no-such-flag"
expect_exit 2 "$PSTRAIN" train --optimizer.lrr 0.1; expect_in err.txt "optimizer.lrr"
expect_exit 2 "$PSTRAIN" train --epochs abc;        expect_in err.txt "epochs"
expect_exit 2 "$PSTRAIN" train --epochs;            expect_in err.txt "needs a value"
expect_exit 4 "$PSTRAIN" train /no/such/job.yaml;   expect_in err.txt "/no/such/job.yaml"

# Every subcommand has --help (and -h): usage on stdout, exit 0, whatever else is given.
for cmd in train local coordinator server worker mpi eval predict consolidate plot status keygen; do
  expect_exit 0 "$PSTRAIN" "$cmd" --help;  expect_in out.txt "^usage: .*pstrain $cmd"
  expect_in out.txt "^  -h, --help"
  expect_exit 0 "$PSTRAIN" "$cmd" --no-such-flag -h; expect_in out.txt "^usage: .*pstrain $cmd"
done

# One parser, one set of errors: "pstrain CMD: ...", exit 2.
expect_exit 2 "$PSTRAIN" train --epochs x;     expect_in err.txt "^pstrain train: --epochs: 'x' is not a number$"
expect_exit 2 "$PSTRAIN" train --epoch 3;      expect_in err.txt "^pstrain train: unknown option '--epoch' \(see --help\)$"
expect_exit 2 "$PSTRAIN" train --print-config=yes; expect_in err.txt "^pstrain train: --print-config takes no value$"
expect_exit 2 "$PSTRAIN" train a.yaml b.yaml;  expect_in err.txt "^pstrain train: unexpected argument 'b.yaml'"
expect_exit 2 "$PSTRAIN" train --consistency x; expect_in err.txt "'x' is not one of bsp, ssp, asp"
expect_exit 2 "$PSTRAIN" server --rank 0 --coordinator tcp://127.0.0.1:1 --port 70000
expect_in err.txt "^pstrain server: --port: '70000' is out of range \(0 to 65535\)$"
expect_exit 2 "$PSTRAIN" worker --rank;        expect_in err.txt "^pstrain worker: --rank needs a value$"
expect_exit 2 "$PSTRAIN" plot run --ascii --bogus; expect_in err.txt "^pstrain plot: unknown option '--bogus'"
expect_exit 2 "$PSTRAIN" keygen -x k;          expect_in err.txt "^pstrain keygen: unknown option '-x'"
# Job keys with a dot go to the job, as "--KEY VALUE" or "--KEY=VALUE", anywhere.
expect_exit 0 "$PSTRAIN" train --model.layers.0.units 32 --print-config --optimizer.lr=0.5
expect_in out.txt "units: 32"; expect_in out.txt "lr: 0.5"
expect_exit 2 "$PSTRAIN" train --print-config --optimizer.lr; expect_in err.txt "--optimizer.lr needs a value"

# --print-config shows the overrides, and its output is a job file that loads again.
expect_exit 0 "$PSTRAIN" train --print-config --epochs 3 --model.layers.0.units=64
expect_in out.txt "epochs: 3"
expect_in out.txt "units: 64"
cp out.txt effective.yaml
expect_exit 0 "$PSTRAIN" train effective.yaml --print-config
expect_in out.txt "epochs: 3"

# --freeze by name (a dense layer's own or default name) and by index.
expect_exit 0 "$PSTRAIN" train --print-config --freeze dense_0,2
[ "$(grep -c 'trainable: false' out.txt)" -eq 2 ] || fail "--freeze dense_0,2 froze $(grep -c 'trainable: false' out.txt) layers"
[ "$(grep -c 'trainable: true' out.txt)" -eq 1 ] || fail "--freeze froze the wrong layers"
expect_exit 2 "$PSTRAIN" train --freeze nope; expect_in err.txt "no dense layer named 'nope'"
expect_exit 2 "$PSTRAIN" train --freeze 9; expect_in err.txt "layer 9 does not exist"

# A job file with an unknown key names the key.
printf 'name: x\ntrain:\n  epochz: 3\n' > bad.yaml
expect_exit 2 "$PSTRAIN" train bad.yaml; expect_in err.txt "epochz"
echo "ok"
