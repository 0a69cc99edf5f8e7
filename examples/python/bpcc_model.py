"""examples/python/bpcc_model.py — a model library that `bpcc FILE.bp -o NAME.so` wrote,
used from Python through ctypes, with NumPy arrays. No other dependency.

    net = Model("./spiral.so")                 # the model named after the file, or name=...
    loss = net.train_step(x, y)                # x float32 [B, 2], y int [B]
    probs = net.forward(x)["probs"]            # [B, 3]
    net.save("spiral.safetensors")

Every function of the C ABI (docs/abi.md) returns BPCC_OK or a negative code with a
message in NAME_last_error(); this wrapper turns those into BpccError. The input and
output tables come from the library itself (NAME_input_info, NAME_output_info), so the
wrapper fits any model.
"""
import ctypes
import os

import numpy as np

BPCC_DIM_BATCH = -1
ERRORS = {-1: "BPCC_E_ARG", -2: "BPCC_E_BATCH", -3: "BPCC_E_RANGE", -4: "BPCC_E_LABEL", -5: "BPCC_E_NOMEM",
          -6: "BPCC_E_IO", -7: "BPCC_E_CHECKPOINT", -8: "BPCC_E_STATE"}


class ParamInfo(ctypes.Structure):      # bpcc_param_info
    _fields_ = [("name", ctypes.c_char_p), ("rank", ctypes.c_int32), ("dims", ctypes.c_int64 * 4),
                ("numel", ctypes.c_int64), ("values", ctypes.POINTER(ctypes.c_float)),
                ("grad", ctypes.POINTER(ctypes.c_float))]


class TensorInfo(ctypes.Structure):     # bpcc_tensor_info
    _fields_ = [("name", ctypes.c_char_p), ("is_label", ctypes.c_int32), ("rank", ctypes.c_int32),
                ("dims", ctypes.c_int64 * 4)]


class BpccError(Exception):
    def __init__(self, code, message):
        super().__init__("%s (%s)" % (message, ERRORS.get(code, code)))
        self.code = code


class Model:
    def __init__(self, path, name=None, seed=0):
        """Load the library at path (a path with a slash, so that the dynamic loader does
        not search for it) and create a model with parameters initialized from seed."""
        self.name = name or os.path.splitext(os.path.basename(path))[0]
        self.lib = ctypes.CDLL(os.path.abspath(path))
        f = self._fn
        vp, i64, fp = ctypes.c_void_p, ctypes.c_int64, ctypes.POINTER(ctypes.c_float)
        arr = ctypes.POINTER(ctypes.c_void_p)
        f("create", vp, ctypes.c_uint64)
        f("destroy", None, vp)
        f("last_error", ctypes.c_char_p)
        for n in ("num_params", "num_inputs", "num_outputs"):
            f(n, ctypes.c_int)
        f("param", ctypes.c_int, vp, ctypes.c_int, ctypes.POINTER(ParamInfo))
        f("input_info", ctypes.c_int, ctypes.c_int, ctypes.POINTER(TensorInfo))
        f("output_info", ctypes.c_int, ctypes.c_int, ctypes.POINTER(TensorInfo))
        f("forward", ctypes.c_int, vp, i64, arr, ctypes.POINTER(fp))
        f("eval", ctypes.c_int, vp, i64, arr, ctypes.POINTER(fp), fp)
        f("loss_and_grad", ctypes.c_int, vp, i64, arr, fp)
        f("train_step", ctypes.c_int, vp, i64, arr, fp)
        f("set_hyper", ctypes.c_int, vp, ctypes.c_char_p, ctypes.c_double)
        f("get_hyper", ctypes.c_int, vp, ctypes.c_char_p, ctypes.POINTER(ctypes.c_double))
        f("get_step", i64, vp)
        f("save", ctypes.c_int, vp, ctypes.c_char_p)
        f("load", ctypes.c_int, vp, ctypes.c_char_p)
        self.inputs = [self._info("input_info", i) for i in range(self.lib_num_inputs())]
        self.outputs = [self._info("output_info", i) for i in range(self.lib_num_outputs())]
        self.net = self.lib_create(seed)
        if not self.net:
            raise BpccError(-5, self.lib_last_error().decode())

    def _fn(self, short, restype, *argtypes):
        fn = getattr(self.lib, "%s_%s" % (self.name, short))
        fn.restype, fn.argtypes = restype, list(argtypes)
        setattr(self, "lib_" + short, fn)

    def _check(self, rc):
        if rc != 0:
            raise BpccError(rc, self.lib_last_error().decode())

    def _info(self, which, i):
        t = TensorInfo()
        self._check(getattr(self, "lib_" + which)(i, ctypes.byref(t)))
        row = [int(d) for d in t.dims[1:t.rank]]
        return {"name": t.name.decode(), "is_label": bool(t.is_label), "row": row,
                "classes": int(t.dims[t.rank - 1]) if t.is_label else None}

    def close(self):
        if self.net:
            self.lib_destroy(self.net)
            self.net = None

    def __del__(self):
        self.close()

    # ----------------------------------------------------------------- arrays in, out

    def _inputs(self, arrays, labels_optional=False):
        """C pointers to the inputs, in the model's order; the converted arrays are kept
        alive with them. A label input becomes int32, any other float32, C order."""
        if len(arrays) != len(self.inputs):
            raise ValueError("%s takes %d inputs (%s), got %d" % (self.name, len(self.inputs),
                             ", ".join(t["name"] for t in self.inputs), len(arrays)))
        batch, keep = None, []
        ptrs = (ctypes.c_void_p * len(arrays))()
        for k, (a, t) in enumerate(zip(arrays, self.inputs)):
            if a is None and t["is_label"] and labels_optional:
                continue
            a = np.ascontiguousarray(a, dtype=np.int32 if t["is_label"] else np.float32)
            want = () if t["is_label"] else tuple(t["row"])
            if a.ndim < 1 or a.shape[1:] != want:
                raise ValueError("input '%s' has shape %s; expected [B%s]" % (
                    t["name"], list(a.shape), "".join(", %d" % d for d in want)))
            if batch is not None and a.shape[0] != batch:
                raise ValueError("input '%s' has %d rows, the others %d" % (t["name"], a.shape[0], batch))
            batch = a.shape[0]
            keep.append(a)
            ptrs[k] = a.ctypes.data
        return batch, ptrs, keep

    def forward(self, *arrays):
        """Inference mode: {output name: float32 array [B, ...]}. Labels may be None."""
        if len(arrays) == len(self.inputs) - sum(t["is_label"] for t in self.inputs):
            it = iter(arrays)      # forward(x) for a model with inputs (x, y)
            arrays = [None if t["is_label"] else next(it) for t in self.inputs]
        batch, ptrs, keep = self._inputs(arrays, labels_optional=True)
        outs = [np.empty([batch] + t["row"], dtype=np.float32) for t in self.outputs]
        optrs = (ctypes.POINTER(ctypes.c_float) * len(outs))(
            *[o.ctypes.data_as(ctypes.POINTER(ctypes.c_float)) for o in outs])
        self._check(self.lib_forward(self.net, batch, ptrs, optrs))
        return {t["name"]: o for t, o in zip(self.outputs, outs)}

    def evaluate(self, *arrays):
        """The loss in inference mode (labels required)."""
        batch, ptrs, keep = self._inputs(arrays)
        loss = ctypes.c_float()
        self._check(self.lib_eval(self.net, batch, ptrs, None, ctypes.byref(loss)))
        return loss.value

    def train_step(self, *arrays):
        """Forward, backward and the optimizer's update; the loss before the update."""
        batch, ptrs, keep = self._inputs(arrays)
        loss = ctypes.c_float()
        self._check(self.lib_train_step(self.net, batch, ptrs, ctypes.byref(loss)))
        return loss.value

    # ------------------------------------------------------ parameters, state, files

    def params(self):
        """{path name: float32 array}: views of the model's own memory (writing to one
        changes the model); valid while the model lives."""
        out = {}
        for i in range(self.lib_num_params()):
            p = ParamInfo()
            self._check(self.lib_param(self.net, i, ctypes.byref(p)))
            out[p.name.decode()] = np.ctypeslib.as_array(p.values, shape=tuple(p.dims[:p.rank]) or (1,))
        return out

    def set_hyper(self, name, value):
        self._check(self.lib_set_hyper(self.net, name.encode(), value))

    def get_hyper(self, name):
        v = ctypes.c_double()
        self._check(self.lib_get_hyper(self.net, name.encode(), ctypes.byref(v)))
        return v.value

    @property
    def step(self):
        return self.lib_get_step(self.net)

    def save(self, path):
        self._check(self.lib_save(self.net, os.fsencode(path)))

    def load(self, path):
        self._check(self.lib_load(self.net, os.fsencode(path)))
