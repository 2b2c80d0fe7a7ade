"""Reading an ONNX graph without running it: the recurrent nodes anywhere in it (subgraphs of
If / Loop / Scan included, each with its path), checked tensors, and the constant folding of the
simple shape-and-copy ops that exporters put between the stored weights and the LSTM / GRU / RNN
node (Constant -> Unsqueeze, Slice + Concat, ...), in NumPy, following each op's ONNX semantics
per opset. Every problem with the file is a ValueError (OnnxError) that names the model, the
node and the field; a value that is not constant (it depends on a graph input, or on an op this
module does not fold) is NotConstant, whose message says why."""
import numpy as np


class OnnxError(ValueError):
    """The model is malformed or uses something fastcells cannot read."""


class NotConstant(Exception):
    """A value is computed at run time (from a graph input or by an op not folded here)."""


# the ops with subgraph attributes (attribute name -> subgraph); the paths name them
_SUBGRAPH_OPS = {"If": ("then_branch", "else_branch"), "Loop": ("body",), "Scan": ("body",)}
RECURRENT_OPS = ("LSTM", "GRU", "RNN")
# the recurrent ops of other domains: onnxruntime's quantize_dynamic turns an LSTM into this
QUANTIZED_RECURRENT_OPS = {("com.microsoft", "DynamicQuantizeLSTM")}

# ONNX TensorProto.DataType -> NumPy dtype, and the repeated field that holds the values when
# raw_data is empty (float16 and bfloat16 are stored as their bit patterns in int32_data)
_TENSOR_TYPES = {1: (np.float32, "float_data"), 2: (np.uint8, "int32_data"),
                 3: (np.int8, "int32_data"), 4: (np.uint16, "int32_data"),
                 5: (np.int16, "int32_data"), 6: (np.int32, "int32_data"),
                 7: (np.int64, "int64_data"), 9: (np.bool_, "int32_data"),
                 10: (np.float16, "int32_data"), 11: (np.float64, "double_data"),
                 12: (np.uint32, "uint64_data"), 13: (np.uint64, "uint64_data")}
# the elements any one tensor may have: far more than any recurrent model, small enough that a
# forged header cannot make NumPy allocate gigabytes
MAX_TENSOR_ELEMENTS = 1 << 28


class Scope:
    """One graph and the scopes around it (a subgraph sees the names of its outer graphs):
    which node produces each name, which names are graph inputs, the initializers."""

    def __init__(self, graph, outer, path):
        self.graph, self.outer, self.path = graph, outer, path
        self.inits = {t.name: t for t in graph.initializer}
        self.inputs = {i.name for i in graph.input} - set(self.inits)
        self.producer = {}
        for node in graph.node:
            for out in node.output:
                if out:
                    self.producer[out] = node

    def lookup(self, name):
        """('init', TensorProto) | ('node', NodeProto) | ('input', None) | ('outer', Scope)
        | None, searching this graph then the outer ones; the scope it was found in."""
        s = self
        while s is not None:
            if name in s.inits:
                return "init", s.inits[name], s
            if name in s.producer:
                return "node", s.producer[name], s
            if name in s.inputs:
                return "input", None, s
            s = s.outer
        return None, None, None


def text(value):
    """A name as str: protobuf hands a string field holding invalid UTF-8 back as bytes."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value


def node_label(node):
    """The name that messages and paths use for a node: its name, else its first output."""
    label = node.name or (node.output[0] if len(node.output) else f"<unnamed {node.op_type}>")
    return text(label)


def subgraphs(node):
    """[(attribute label, GraphProto)] of a node (every GRAPH / GRAPHS attribute), an If's
    then_branch before its else_branch, the others in attribute order."""
    out = []
    known = _SUBGRAPH_OPS.get(node.op_type, ())
    attrs = sorted(node.attribute, key=lambda a: (known.index(a.name) if a.name in known
                                                  else len(known)))
    for a in attrs:
        if a.type == 5:                       # AttributeProto.GRAPH
            out.append((a.name, a.g))
        elif a.type == 10:                    # AttributeProto.GRAPHS
            out.extend((f"{a.name}[{k}]", g) for k, g in enumerate(a.graphs))
    return out


def find_recurrent(graph, max_depth=16):
    """[(path, node, scope)] of every LSTM / GRU / RNN node of the default domain (and every
    com.microsoft DynamicQuantizeLSTM), depth first
    in graph order; path: the names of the enclosing nodes and subgraph attributes and the
    node's own name, joined by '/' (e.g. 'If_0/then_branch/LSTM_3')."""
    found = []

    def walk(g, outer, prefix, depth):
        if depth > max_depth:
            raise OnnxError(f"subgraphs nested more than {max_depth} deep at {prefix!r}")
        scope = Scope(g, outer, prefix)
        for node in g.node:
            label = node_label(node)
            if (node.op_type in RECURRENT_OPS and node.domain in ("", "ai.onnx")
                    or (node.domain, node.op_type) in QUANTIZED_RECURRENT_OPS):
                found.append((f"{prefix}{label}", node, scope))
            for attr, sub in subgraphs(node):
                walk(sub, scope, f"{prefix}{label}/{attr}/", depth + 1)

    walk(graph, None, "", 0)
    return found


def total_elements(graph):
    """Elements in all initializers and Constant tensors of the graph and its subgraphs (the
    bound for folding); header dims only, nothing is decoded."""
    n = 0
    for t in graph.initializer:
        n += _dims_product(t)
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.type == 4:               # TENSOR
                    n += _dims_product(a.t)
                else:
                    n += max(len(a.floats), len(a.ints), 1)
        for _, sub in subgraphs(node):
            n += total_elements(sub)
    return n


def _dims_product(t):
    n = 1
    for d in t.dims:
        n *= max(int(d), 0)
    return n


def read_tensor(t, where):
    """A TensorProto as a NumPy array, after checking it against its header: known data type,
    non-negative dims, the data (raw_data or the typed field) holding exactly that many
    elements, no external data left unloaded."""
    name = t.name or "(unnamed)"
    if t.data_location == 1 or t.external_data:   # TensorProto.EXTERNAL
        raise OnnxError(f"{where}: tensor {name!r} keeps its data in an external file, not "
                        f"loaded; load the model from its path (onnx.load loads external data)")
    if t.data_type not in _TENSOR_TYPES:
        raise OnnxError(f"{where}: tensor {name!r} has data type {t.data_type}, not a number "
                        f"type fastcells reads")
    dims = [int(d) for d in t.dims]
    if any(d < 0 for d in dims):
        raise OnnxError(f"{where}: tensor {name!r} has negative dims {dims}")
    count = 1
    for d in dims:
        count *= d
    if count > MAX_TENSOR_ELEMENTS:
        raise OnnxError(f"{where}: tensor {name!r} claims dims {dims} ({count} elements), "
                        f"more than the {MAX_TENSOR_ELEMENTS} fastcells reads")
    dtype, field = _TENSOR_TYPES[t.data_type]
    dtype = np.dtype(dtype)
    if t.raw_data:
        if len(t.raw_data) != count * dtype.itemsize:
            raise OnnxError(f"{where}: tensor {name!r} has dims {dims} ({count} x "
                            f"{dtype.itemsize} bytes) but {len(t.raw_data)} bytes of raw_data")
        return np.frombuffer(t.raw_data, dtype=dtype.newbyteorder("<")).astype(
            dtype).reshape(dims)
    values = getattr(t, field)
    if len(values) != count:
        raise OnnxError(f"{where}: tensor {name!r} has dims {dims} ({count} elements) but "
                        f"{len(values)} values in {field}")
    if t.data_type == 10:                     # float16 bit patterns
        return np.asarray(values, np.uint16).view(np.float16).reshape(dims)
    if t.data_type in (1, 11):
        return np.asarray(values, dtype).reshape(dims)
    try:
        return np.asarray(values).astype(dtype).reshape(dims)
    except (OverflowError, ValueError) as e:
        raise OnnxError(f"{where}: tensor {name!r}: {e}") from None


# attribute type codes (onnx.AttributeProto.AttributeType)
ATTR_TYPES = {"FLOAT": 1, "INT": 2, "STRING": 3, "TENSOR": 4, "GRAPH": 5, "FLOATS": 6,
              "INTS": 7, "STRINGS": 8}
_ATTR_NAMES = {v: k for k, v in ATTR_TYPES.items()}


def attribute(node, name, kind, where, default=None):
    """The value of the node's attribute `name`, which must have the type `kind` ('INT',
    'FLOATS', ...); `default` when absent. Strings are decoded (UTF-8)."""
    hits = [a for a in node.attribute if a.name == name]
    if not hits:
        return default
    if len(hits) > 1:
        raise OnnxError(f"{where}: attribute {name} is given {len(hits)} times")
    a = hits[0]
    if a.type != ATTR_TYPES[kind]:
        raise OnnxError(f"{where}: attribute {name}: expected type {kind}, got "
                        f"{_ATTR_NAMES.get(a.type, a.type)}")
    try:
        if kind == "INT":
            return int(a.i)
        if kind == "FLOAT":
            return float(a.f)
        if kind == "STRING":
            return a.s.decode("utf-8")
        if kind == "INTS":
            return [int(v) for v in a.ints]
        if kind == "FLOATS":
            return [float(v) for v in a.floats]
        if kind == "STRINGS":
            return [s.decode("utf-8") for s in a.strings]
        if kind == "TENSOR":
            return a.t
    except UnicodeDecodeError:
        raise OnnxError(f"{where}: attribute {name}: not UTF-8 text") from None
    raise AssertionError(kind)


class Folder:
    """Constant values of names in a scope, folding the simple ops in NumPy (memoized).

    opset: the default-domain opset version (the semantics of Unsqueeze, Squeeze, Split and
    Slice changed with it); max_elements: no folded value may have more elements."""

    MAX_CHAIN = 200              # nodes between a stored tensor and the value asked for

    def __init__(self, source, opset, max_elements):
        self.source, self.opset, self.max_elements = source, opset, max_elements
        self._memo = {}          # (id(scope that holds it), name) -> array
        self._active = set()     # the names being folded (a revisit is a cycle)

    def value(self, scope, name, feeds):
        """The constant value of `name` as seen from `scope`; `feeds` says what it is for (the
        messages name it). NotConstant if it is computed at run time, OnnxError if the model
        is malformed."""
        kind, obj, where = scope.lookup(name)
        if kind is None:
            raise OnnxError(f"{self.source}: {feeds}: the name {name!r} is not produced by "
                            f"any node, initializer or graph input")
        if kind == "input":
            raise NotConstant(f"{name!r} is an input of the graph")
        key = (id(where), name)
        if key in self._memo:
            return self._memo[key]
        if kind == "init":
            arr = read_tensor(obj, f"{self.source}: initializer")
        else:
            if key in self._active:
                raise OnnxError(f"{self.source}: the graph has a cycle through {name!r} "
                                f"(node {node_label(obj)!r})")
            if len(self._active) >= self.MAX_CHAIN:
                raise OnnxError(f"{self.source}: {feeds}: a chain of more than "
                                f"{self.MAX_CHAIN} nodes before it; not folded")
            self._active.add(key)
            try:
                outs = self._fold(obj, where, feeds)
            finally:
                self._active.discard(key)
            for out, arr_k in zip(obj.output, outs):
                if out:
                    self._memo[(id(where), out)] = arr_k
            arr = self._memo.get(key)
            if arr is None:
                raise OnnxError(f"{self.source}: node {node_label(obj)!r} ({obj.op_type}) "
                                f"gives {len(outs)} outputs, fewer than the one named {name!r}")
        self._check_size(arr, name)
        self._memo[key] = arr
        return arr

    def _check_size(self, arr, what):
        if arr.size > self.max_elements:
            raise OnnxError(f"{self.source}: {what} would have {arr.size} elements, more than "
                            f"{self.max_elements} (a small multiple of the model's stored "
                            f"elements); refusing to fold it")

    def _fold(self, node, scope, feeds):
        where = f"{self.source}: node {node_label(node)!r} ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            raise NotConstant(f"{node.op_type} (domain {node.domain!r}) node "
                              f"{node_label(node)!r}, which feeds {feeds}, is not folded")
        fold = getattr(self, f"_op_{text(node.op_type)}", None)
        if fold is None:
            raise NotConstant(f"{node.op_type} node {node_label(node)!r}, which feeds {feeds}, "
                              f"is not an op fastcells folds ({', '.join(FOLDED_OPS)})")

        def arg(k, required=True):
            if k >= len(node.input) or not node.input[k]:
                if required:
                    raise OnnxError(f"{where}: input {k} is missing")
                return None
            return self.value(scope, node.input[k], feeds)

        try:
            outs = fold(node, arg, where)
        except (OnnxError, NotConstant):
            raise
        except (ValueError, IndexError, TypeError, OverflowError, MemoryError) as e:
            raise OnnxError(f"{where}: cannot fold it: {e}") from None
        return outs

    # -- the folded ops: each returns the list of its outputs ----------------------------------

    def _axes(self, node, arg, where, k):
        """Unsqueeze / Squeeze axes: an attribute before opset 13, input k from 13."""
        if self.opset < 13:
            return attribute(node, "axes", "INTS", where)
        return _int_list(arg(k, required=False))

    def _op_Constant(self, node, arg, where):
        if len(node.attribute) != 1:
            raise OnnxError(f"{where}: expected exactly one value attribute, got "
                            f"{[a.name for a in node.attribute]}")
        a = node.attribute[0]
        kinds = {"value": "TENSOR", "value_float": "FLOAT", "value_floats": "FLOATS",
                 "value_int": "INT", "value_ints": "INTS"}
        if a.name not in kinds:
            raise NotConstant(f"Constant node {node_label(node)!r} with attribute {a.name} is "
                              f"not folded")
        v = attribute(node, a.name, kinds[a.name], where)
        if a.name == "value":
            return [read_tensor(v, where)]
        return [np.asarray(v, np.float32 if "float" in a.name else np.int64)]

    def _op_Identity(self, node, arg, where):
        return [arg(0)]

    def _op_Cast(self, node, arg, where):
        to = attribute(node, "to", "INT", where)
        if to is None:
            raise OnnxError(f"{where}: attribute to is required")
        if to not in _TENSOR_TYPES:
            raise NotConstant(f"Cast node {node_label(node)!r} to data type {to} is not folded")
        x = arg(0)
        with np.errstate(over="ignore", invalid="ignore"):   # out of range: inf, as ONNX
            return [x.astype(_TENSOR_TYPES[to][0])]

    def _op_Unsqueeze(self, node, arg, where):
        x, axes = arg(0), self._axes(node, arg, where, 1)
        if not axes:
            raise OnnxError(f"{where}: axes are required")
        r = x.ndim + len(axes)
        axes = sorted(a + r if a < 0 else a for a in axes)
        if len(set(axes)) != len(axes) or not all(0 <= a < r for a in axes):
            raise OnnxError(f"{where}: axes {axes} invalid for rank {x.ndim}")
        return [np.expand_dims(x, tuple(axes))]

    def _op_Squeeze(self, node, arg, where):
        x, axes = arg(0), self._axes(node, arg, where, 1)
        if axes is None:
            return [np.squeeze(x)]
        axes = tuple(a + x.ndim if a < 0 else a for a in axes)
        if not all(0 <= a < x.ndim and x.shape[a] == 1 for a in axes):
            raise OnnxError(f"{where}: cannot squeeze axes {list(axes)} of shape {x.shape}")
        return [np.squeeze(x, axis=axes)]

    def _op_Reshape(self, node, arg, where):
        x = arg(0)
        if self.opset < 5:
            shape = attribute(node, "shape", "INTS", where, [])
        else:
            shape = _int_list(arg(1))
        allowzero = self.opset >= 14 and attribute(node, "allowzero", "INT", where, 0)
        out = []
        for k, d in enumerate(shape):
            if d == 0 and not allowzero:
                if k >= x.ndim:
                    raise OnnxError(f"{where}: shape {shape}: 0 at axis {k} copies a dim the "
                                    f"input (shape {x.shape}) lacks")
                d = x.shape[k]
            out.append(d)
        if out.count(-1) > 1 or any(d < -1 for d in out):
            raise OnnxError(f"{where}: invalid shape {shape}")
        if -1 in out:
            known = int(np.prod([d for d in out if d != -1], dtype=object))
            if known == 0 or x.size % known:
                raise OnnxError(f"{where}: cannot reshape {x.shape} to {shape}")
            out[out.index(-1)] = x.size // known
        if int(np.prod(out, dtype=object)) != x.size:
            raise OnnxError(f"{where}: cannot reshape {x.shape} ({x.size} elements) to "
                            f"{shape}")
        return [x.reshape(out)]

    def _op_Expand(self, node, arg, where):
        x, shape = arg(0), _int_list(arg(1))
        if any(d < 0 for d in shape):
            raise OnnxError(f"{where}: invalid shape {shape}")
        try:
            out_shape = np.broadcast_shapes(x.shape, tuple(shape))
        except ValueError:
            raise OnnxError(f"{where}: cannot expand {x.shape} to {shape}") from None
        n = int(np.prod(out_shape, dtype=object))
        if n > self.max_elements:
            raise OnnxError(f"{where}: expanding {x.shape} to {list(out_shape)} would make {n} "
                            f"elements, more than {self.max_elements} (a small multiple of the "
                            f"model's stored elements); refusing to fold it")
        return [np.broadcast_to(x, out_shape).copy()]

    def _op_Concat(self, node, arg, where):
        axis = attribute(node, "axis", "INT", where)
        if axis is None:
            raise OnnxError(f"{where}: attribute axis is required")
        parts = [arg(k) for k in range(len(node.input)) if node.input[k]]
        if not parts:
            raise OnnxError(f"{where}: no inputs")
        n = sum(p.size for p in parts)
        if n > self.max_elements:
            raise OnnxError(f"{where}: would make {n} elements, more than {self.max_elements}")
        return [np.concatenate(parts, axis=axis)]

    def _op_Transpose(self, node, arg, where):
        x = arg(0)
        perm = attribute(node, "perm", "INTS", where)
        if perm is None:
            perm = list(range(x.ndim))[::-1]
        if sorted(perm) != list(range(x.ndim)):
            raise OnnxError(f"{where}: perm {perm} is not a permutation of {x.ndim} axes")
        return [np.ascontiguousarray(np.transpose(x, perm))]

    def _op_Slice(self, node, arg, where):
        x = arg(0)
        if self.opset < 10:
            starts = attribute(node, "starts", "INTS", where)
            ends = attribute(node, "ends", "INTS", where)
            axes = attribute(node, "axes", "INTS", where)
            steps = None
        else:
            starts, ends = _int_list(arg(1)), _int_list(arg(2))
            axes, steps = _int_list(arg(3, False)), _int_list(arg(4, False))
        if starts is None or ends is None or len(starts) != len(ends):
            raise OnnxError(f"{where}: starts and ends must be given, of equal length")
        axes = list(range(len(starts))) if axes is None else axes
        steps = [1] * len(starts) if steps is None else steps
        if len(axes) != len(starts) or len(steps) != len(starts):
            raise OnnxError(f"{where}: starts, ends, axes and steps differ in length")
        seen = set()
        for s, e, a, st in zip(starts, ends, axes, steps):
            a = a + x.ndim if a < 0 else a
            if not 0 <= a < x.ndim or a in seen:
                raise OnnxError(f"{where}: axis {a} invalid or repeated for rank {x.ndim}")
            seen.add(a)
            if st == 0:
                raise OnnxError(f"{where}: step 0")
            n = x.shape[a]
            s, e = s + n if s < 0 else s, e + n if e < 0 else e   # then clamped, as ONNX says
            if st > 0:
                s, e = min(max(s, 0), n), min(max(e, 0), n)
            else:
                s, e = min(max(s, 0), n - 1), min(max(e, -1), n - 1)
            x = np.take(x, np.arange(s, e, st, dtype=np.int64), axis=a)
        return [x]

    def _op_Split(self, node, arg, where):
        x = arg(0)
        axis = attribute(node, "axis", "INT", where, 0)
        axis = axis + x.ndim if axis < 0 else axis
        if not 0 <= axis < x.ndim:
            raise OnnxError(f"{where}: axis {axis} invalid for rank {x.ndim}")
        if self.opset < 13:
            split = attribute(node, "split", "INTS", where)
        else:
            split = _int_list(arg(1, False))
        n_out = len(node.output)
        if self.opset >= 18 and split is None:
            n_out = attribute(node, "num_outputs", "INT", where, n_out)
        n = x.shape[axis]
        if split is None:
            if n_out < 1:
                raise OnnxError(f"{where}: no outputs")
            size = -(-n // n_out)
            split = [min(size, n - k * size) for k in range(n_out)]
            if self.opset < 18 and n % n_out:
                raise OnnxError(f"{where}: axis {axis} of length {n} does not split into "
                                f"{n_out} equal parts")
        if any(s < 0 for s in split) or sum(split) != n or len(split) != len(node.output):
            raise OnnxError(f"{where}: split {split} does not cut axis {axis} of length {n} "
                            f"into {len(node.output)} parts")
        return list(np.split(x, np.cumsum(split)[:-1], axis=axis))


def _int_list(a):
    """An integer input (axes, shape, starts, ...) as a list of ints; None stays None."""
    if a is None:
        return None
    if a.dtype.kind not in "iu":
        raise TypeError(f"expected an integer tensor, got {a.dtype}")
    return [int(v) for v in a.reshape(-1)]


FOLDED_OPS = sorted(k[4:] for k in vars(Folder) if k.startswith("_op_"))
