"""pstrain: a worker of a pstrain job from Python (ctypes over libpstrain.so).

The C header include/pstrain/pstrain.h is the manual; this module mirrors it:

    import numpy as np, pstrain
    w = pstrain.Worker("job.yaml", rank=0, coordinator="tcp://127.0.0.1:7070", steps=100)
    w.declare("fc.weight", (10, 784)); w.declare("fc.bias", (10,))
    w.set("fc.weight", init)            # rank 0's initial weights
    w.join()
    W, dW = w.weights("fc.weight"), w.grad("fc.weight")   # numpy views, no copy
    for step in range(100):
        dW[...] = ...                   # the step's gradient, in place
        w.step()                        # push, pull, wait: W holds the new weights
    w.finish(); w.close()

The library is found through $PSTRAIN_LIBRARY (a path), else as libpstrain.so on the
loader's path (LD_LIBRARY_PATH, or an installed prefix). Views returned by weights() and
grad() point into memory the worker owns: they are valid until close(). Errors raise
PstError with the C status code and its one-line message. pstrain.torch has the PyTorch
integration (DistributedOptimizer).
"""
import ctypes
import os

import numpy as np

__all__ = ["Worker", "PstError", "load_library"]

_lib = None

# pst_status, as in include/pstrain/pstrain.h
STATUS = ["ok", "arg", "nomem", "io", "data", "config", "numeric", "state", "timeout",
          "peer", "net", "diverged"]


class PstError(RuntimeError):
    """A pst_* call failed: code is its pst_status, args[0] the library's one line."""

    def __init__(self, code, msg):
        super().__init__(msg)
        self.code = code
        self.status = STATUS[code] if 0 <= code < len(STATUS) else str(code)


class _Err(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("msg", ctypes.c_char * 512)]


class _Options(ctypes.Structure):
    _fields_ = [("job_path", ctypes.c_char_p), ("coordinator", ctypes.c_char_p),
                ("rank", ctypes.c_int), ("keys", ctypes.POINTER(ctypes.c_char_p)),
                ("values", ctypes.POINTER(ctypes.c_char_p)), ("noverrides", ctypes.c_int),
                ("steps", ctypes.c_int64), ("quiet", ctypes.c_int)]


class _Info(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("ndim", ctypes.c_int),
                ("shape", ctypes.c_int64 * 8), ("offset", ctypes.c_size_t),
                ("numel", ctypes.c_size_t)]


def load_library(path=None):
    """Loads libpstrain.so once (path, else $PSTRAIN_LIBRARY, else the loader's search)."""
    global _lib
    if _lib is not None:
        return _lib
    lib = ctypes.CDLL(path or os.environ.get("PSTRAIN_LIBRARY") or "libpstrain.so")
    P, I, E = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_Err)
    F = ctypes.POINTER(ctypes.c_float)
    sigs = {
        "pst_worker_create": (I, [ctypes.POINTER(P), ctypes.POINTER(_Options), E]),
        "pst_worker_destroy": (None, [P]),
        "pst_tensor_declare": (I, [P, ctypes.c_char_p, I, ctypes.POINTER(ctypes.c_int64), E]),
        "pst_tensor_find": (I, [P, ctypes.c_char_p, ctypes.POINTER(_Info), E]),
        "pst_tensor_set": (I, [P, ctypes.c_char_p, F, ctypes.c_size_t, E]),
        "pst_tensor_get": (I, [P, ctypes.c_char_p, F, ctypes.c_size_t, E]),
        "pst_tensor_weights": (F, [P, ctypes.c_char_p]),
        "pst_tensor_grad": (F, [P, ctypes.c_char_p]),
        "pst_join": (I, [P, E]),
        "pst_consistency": (ctypes.c_char_p, [P, ctypes.POINTER(I)]),
        "pst_rank": (I, [P]),
        "pst_num_workers": (I, [P]),
        "pst_clock": (ctypes.c_int64, [P]),
        "pst_push": (I, [P, ctypes.POINTER(ctypes.c_uint64), E]),
        "pst_pull": (I, [P, ctypes.POINTER(ctypes.c_uint64), E]),
        "pst_wait": (I, [P, ctypes.c_uint64, E]),
        "pst_checkpoint": (I, [P, E]),
        "pst_progress": (None, [P, I, ctypes.c_int64, ctypes.c_double]),
        "pst_finish": (I, [P, E]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    _lib = lib
    return lib


def _b(s):
    return None if s is None else str(s).encode()


class Worker:
    """One worker of a job (pst_worker). rank/coordinator None: from the environment
    (PSTRAIN_RANK, PSTRAIN_COORDINATOR, ...), as `pstrain worker`. overrides: job keys to
    values, as --KEY VALUE on pstrain's command line."""

    def __init__(self, job=None, rank=None, coordinator=None, overrides=None, steps=0,
                 quiet=False, library=None):
        self._lib = load_library(library)
        self._h = ctypes.c_void_p()
        ov = list((overrides or {}).items())
        keys = (ctypes.c_char_p * max(len(ov), 1))(*[_b(k) for k, _ in ov])
        vals = (ctypes.c_char_p * max(len(ov), 1))(*[_b(v) for _, v in ov])
        o = _Options(_b(job), _b(coordinator), -1 if rank is None else int(rank), keys, vals,
                     len(ov), int(steps), int(bool(quiet)))
        self._call(self._lib.pst_worker_create, ctypes.byref(self._h), ctypes.byref(o))

    def _call(self, fn, *args):
        err = _Err()
        rc = fn(*args, ctypes.byref(err))
        if rc:
            raise PstError(rc, err.msg.decode(errors="replace"))

    def _handle(self):
        if not self._h:
            raise PstError(7, "the worker is closed")
        return self._h

    def declare(self, name, shape):
        """Declares a dense float32 tensor: the next range of the flat vector."""
        shape = tuple(int(d) for d in shape) or (1,)
        arr = (ctypes.c_int64 * len(shape))(*shape)
        self._call(self._lib.pst_tensor_declare, self._handle(), _b(name), len(shape), arr)

    def info(self, name):
        i = _Info()
        self._call(self._lib.pst_tensor_find, self._handle(), _b(name), ctypes.byref(i))
        return {"offset": i.offset, "numel": i.numel, "shape": tuple(i.shape[:i.ndim])}

    def set(self, name, values):
        """Copies values (any array of the tensor's size) into the tensor's weights."""
        a = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
        self._call(self._lib.pst_tensor_set, self._handle(), _b(name),
                   a.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), a.size)

    def get(self, name):
        """A copy of the tensor's current weights, in its shape."""
        inf = self.info(name)
        a = np.empty(inf["numel"], dtype=np.float32)
        self._call(self._lib.pst_tensor_get, self._handle(), _b(name),
                   a.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), a.size)
        return a.reshape(inf["shape"])

    def _view(self, fn, name):
        inf = self.info(name)
        p = fn(self._handle(), _b(name))
        if not p:
            raise PstError(7, "%s: no view of '%s' before join()" % (fn.__name__, name))
        # The array keeps this Worker alive (buffer -> _owner), so the view outlives no
        # pst_worker_destroy but an explicit close().
        buf = (ctypes.c_float * inf["numel"]).from_address(ctypes.addressof(p.contents))
        buf._owner = self
        return np.frombuffer(buf, dtype=np.float32).reshape(inf["shape"])

    def weights(self, name):
        """The tensor's weights in the worker's flat buffer (no copy; a pull writes it)."""
        return self._view(self._lib.pst_tensor_weights, name)

    def grad(self, name):
        """The tensor's gradient in the worker's flat buffer (no copy; a push reads it)."""
        return self._view(self._lib.pst_tensor_grad, name)

    def join(self):
        self._call(self._lib.pst_join, self._handle())

    @property
    def rank(self):
        return self._lib.pst_rank(self._handle())

    @property
    def num_workers(self):
        return self._lib.pst_num_workers(self._handle())

    @property
    def clock(self):
        return self._lib.pst_clock(self._handle())

    @property
    def consistency(self):
        s = ctypes.c_int()
        return self._lib.pst_consistency(self._handle(), ctypes.byref(s)).decode(), s.value

    def push(self):
        r = ctypes.c_uint64()
        self._call(self._lib.pst_push, self._handle(), ctypes.byref(r))
        return r.value

    def pull(self):
        r = ctypes.c_uint64()
        self._call(self._lib.pst_pull, self._handle(), ctypes.byref(r))
        return r.value

    def wait(self, req):
        self._call(self._lib.pst_wait, self._handle(), ctypes.c_uint64(req))

    def step(self):
        """Push this step's gradient, pull the weights of the next clock, wait for them."""
        self.push()
        self.wait(self.pull())

    def checkpoint(self):
        self._call(self._lib.pst_checkpoint, self._handle())

    def progress(self, epoch, step, loss):
        self._lib.pst_progress(self._handle(), int(epoch), int(step), float(loss))

    def finish(self):
        self._call(self._lib.pst_finish, self._handle())

    def close(self):
        """Frees the worker; views from weights()/grad() are invalid afterwards."""
        if self._h:
            self._lib.pst_worker_destroy(self._h)
            self._h = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
