#!/usr/bin/python3
"""FLOPs of one UNet call, counted from the ONNX graph (tools/bench/flops.ts runs this).

Usage: unet_flops.py MODEL.onnx --input NAME=D1,D2,... [--input ...]

The graph inputs are pinned to the given concrete shapes (one call: batch 2 for classifier-free guidance, the
model's latent size, the text encoder's sequence length), onnx.shape_inference.infer_shapes fills in every
intermediate shape, and each Conv, ConvTranspose, MatMul, Gemm and Einsum counts its multiply-accumulates × 2
(groups and batched dimensions included). Everything else (adds, norms, softmax, activations) is not counted as
FLOPs: its element count is reported apart, as `otherElements` (output elements of the other ops). Weights are
not loaded (load_external_data=False): only shapes are needed. Where onnx's own data propagation stops (it
does not compute Div, for one), the small integer tensors computed from shapes are folded into constants and
inference is run again, until nothing changes. Nodes inside Loop/If/Scan subgraphs are not
counted; how many such nodes there were is reported as `subgraphNodesIgnored`.
"""
import argparse
import json
import sys

import onnx
from onnx import shape_inference

COUNTED = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum")


def prod(xs):
    p = 1
    for x in xs:
        p *= x
    return p


def concrete(shape):
    """A list of ints, or None when any dimension is unknown."""
    if shape is None:
        return None
    return shape if all(isinstance(d, int) and d >= 0 for d in shape) else None


def shape_of(vi):
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]


def attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def einsum_macs(equation, shapes):
    lhs = equation.replace(" ", "").split("->")[0]
    sizes = {}
    for term, shape in zip(lhs.split(","), shapes):
        if "..." in term:
            return None
        for letter, dim in zip(term, shape):
            sizes[letter] = dim
    return prod(sizes.values())


def node_macs(node, shapes):
    """Multiply-accumulates of one node, or None when a shape it needs is unknown."""
    ins = [concrete(shapes.get(n)) if n else None for n in node.input]
    out = concrete(shapes.get(node.output[0]))
    op = node.op_type
    if op == "Conv":
        w = ins[1]
        if w is None or out is None:
            return None
        return prod(out) * prod(w[1:])  # every output element: Cin/groups × kernel MACs
    if op == "ConvTranspose":
        x, w = ins[0], ins[1]
        if x is None or w is None:
            return None
        return prod(x) * prod(w[1:])  # every input element scatters into Cout/groups × kernel outputs
    if op == "MatMul":
        a = ins[0]
        if a is None or out is None:
            return None
        return prod(out) * a[-1]
    if op == "Gemm":
        a = ins[0]
        if a is None or out is None:
            return None
        k = a[0] if attr(node, "transA", 0) else a[1]
        return prod(out) * k
    if op == "Einsum":
        if any(s is None for s in ins):
            return None
        return einsum_macs(attr(node, "equation").decode() if isinstance(attr(node, "equation"), bytes) else attr(node, "equation"), ins)
    return None


def _np_value(t):
    from onnx import numpy_helper
    return numpy_helper.to_array(t)


def fold_shape_arithmetic(graph, shapes):
    """Replace nodes that compute small integer tensors from shapes (Shape, Gather, Concat, Div, ...) with Constants.

    onnx 1.12's data propagation stops at ops such as Div, which leaves Slice/Reshape after it without a shape;
    folding those values lets infer_shapes go on. Returns how many nodes were folded.
    """
    import numpy as np
    from onnx import numpy_helper

    values = {}
    for init in graph.initializer:
        if not init.data_location and prod(init.dims) <= 64:
            values[init.name] = _np_value(init)
    folded = 0
    new_nodes = []
    for node in graph.node:
        op = node.op_type
        ins = [values.get(n) if n else None for n in node.input]
        have = all(v is not None for v in ins)
        out = None
        try:
            if op == "Constant":
                value = attr(node, "value")
                if value is not None:
                    values[node.output[0]] = _np_value(value)
            elif op == "Shape":
                s = concrete(shapes.get(node.input[0]))
                if s is not None:
                    start, end = attr(node, "start", 0), attr(node, "end", None)
                    out = np.array(s[start:end] if end is not None else s[start:], dtype=np.int64)
            elif have and op == "Gather":
                out = np.take(ins[0], ins[1], axis=attr(node, "axis", 0))
            elif have and op == "Unsqueeze":
                axes = attr(node, "axes") if len(ins) < 2 else list(ins[1])
                out = ins[0]
                for a in sorted(a % (out.ndim + len(axes)) for a in axes):
                    out = np.expand_dims(out, a)
            elif have and op == "Squeeze":
                axes = attr(node, "axes") if len(ins) < 2 else list(ins[1])
                out = np.squeeze(ins[0], axis=tuple(axes) if axes is not None else None)
            elif have and op == "Concat":
                out = np.concatenate(ins, axis=attr(node, "axis", 0))
            elif have and op == "Cast":
                out = ins[0].astype(onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[attr(node, "to")])
            elif have and op in ("Add", "Sub", "Mul", "Div") and ins[0].size <= 64:
                a, b = ins
                if op == "Div" and np.issubdtype(a.dtype, np.integer):
                    out = (np.trunc(a / b)).astype(a.dtype)
                else:
                    out = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op](a, b).astype(a.dtype)
            elif have and op == "Slice" and ins[0].size <= 64:
                data, starts, ends = ins[0], ins[1], ins[2]
                axes = ins[3] if len(ins) > 3 else range(len(starts))
                steps = ins[4] if len(ins) > 4 else [1] * len(starts)
                index = [slice(None)] * data.ndim
                for s0, e0, a, st in zip(starts, ends, axes, steps):
                    index[int(a)] = slice(int(s0), int(e0), int(st))
                out = data[tuple(index)]
        except Exception:
            out = None
        if out is not None and op != "Constant":
            out = np.asarray(out)
            values[node.output[0]] = out
            new_nodes.append(onnx.helper.make_node("Constant", [], [node.output[0]], value=numpy_helper.from_array(out, node.output[0])))
            folded += 1
        else:
            new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    return folded


def infer(model):
    """Concrete shapes for every value: infer_shapes, then fold shape arithmetic into constants, until stable."""
    for _ in range(20):
        inferred = shape_inference.infer_shapes(model, data_prop=True)
        g = inferred.graph
        shapes = {}
        for vi in list(g.value_info) + list(g.input) + list(g.output):
            shapes[vi.name] = shape_of(vi)
        for init in g.initializer:
            shapes[init.name] = list(init.dims)
        before = len([n for n in model.graph.node if n.op_type == "Constant"])
        fold_shape_arithmetic(model.graph, shapes)
        if len([n for n in model.graph.node if n.op_type == "Constant"]) == before:
            return model.graph, shapes
    return model.graph, shapes


def count(model_path, inputs):
    model = onnx.load(model_path, load_external_data=False)
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    used = {}
    for gi in graph.input:
        if gi.name in initializers:
            continue
        if gi.name not in inputs:
            raise SystemExit(f"no --input for graph input {gi.name}")
        dims = inputs[gi.name]
        tshape = gi.type.tensor_type.shape
        del tshape.dim[:]
        for d in dims:
            tshape.dim.add().dim_value = d
        used[gi.name] = dims
    # Outputs' declared (possibly symbolic) shapes would clash with the concrete ones: let inference redo them.
    for go in graph.output:
        go.type.tensor_type.ClearField("shape")
    g, shapes = infer(model)

    flops = 0
    by_op = {}
    unknown = []
    other_elements = 0
    subgraph_nodes = 0

    def subgraph_size(node):
        n = 0
        for a in node.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                for inner in sub.node:
                    n += 1 + subgraph_size(inner)
        return n

    for node in g.node:
        subgraph_nodes += subgraph_size(node)
        if node.op_type in COUNTED:
            macs = node_macs(node, shapes)
            if macs is None:
                unknown.append(f"{node.op_type} {node.name}")
                continue
            entry = by_op.setdefault(node.op_type, {"nodes": 0, "flops": 0})
            entry["nodes"] += 1
            entry["flops"] += 2 * macs
            flops += 2 * macs
        else:
            out = concrete(shapes.get(node.output[0])) if node.output else None
            if out is not None:
                other_elements += prod(out)
    return {
        "flops": flops,
        "byOp": by_op,
        "inputsUsed": used,
        "otherElements": other_elements,
        "unknownShapeNodes": unknown,
        "subgraphNodesIgnored": subgraph_nodes,
        "note": "FLOPs = 2 x multiply-accumulates of Conv, ConvTranspose, MatMul, Gemm, Einsum; other ops not counted (otherElements: their output elements); Loop/If/Scan subgraphs not counted",
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--input", action="append", default=[], help="NAME=D1,D2,... (an empty list for a scalar: NAME=)")
    args = parser.parse_args()
    inputs = {}
    for spec in args.input:
        name, _, dims = spec.rpartition("=")
        inputs[name] = [int(d) for d in dims.split(",") if d != ""]
    json.dump(count(args.model, inputs), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
