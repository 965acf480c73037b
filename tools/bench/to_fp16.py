"""A float32 ONNX graph rewritten to float16 throughout (weights, constants, Casts, inputs and outputs), for the
fp16 lever on the cpu provider. Resize's `scales` stay float32 (the operator requires it); value_info is dropped
for onnxruntime to infer again.

    /usr/bin/python3 tools/bench/to_fp16.py IN.onnx OUT.onnx
"""
import sys, numpy as np, onnx
from onnx import TensorProto, numpy_helper, helper
m = onnx.load(sys.argv[1]); g = m.graph
def conv(t):
    if t.data_type == TensorProto.FLOAT:
        a = numpy_helper.to_array(t).astype(np.float16); t.CopyFrom(numpy_helper.from_array(a, t.name))
keep = {n.input[2] for n in g.node if n.op_type == 'Resize' and len(n.input) > 2}
for i in g.initializer:
    if i.name not in keep: conv(i)
for n in g.node:
    for a in n.attribute:
        if a.type == onnx.AttributeProto.TENSOR and not set(n.output) & keep: conv(a.t)
        if n.op_type == 'Cast' and a.name == 'to' and a.i == TensorProto.FLOAT: a.i = TensorProto.FLOAT16
for v in list(g.input) + list(g.output):
    if v.type.tensor_type.elem_type == TensorProto.FLOAT: v.type.tensor_type.elem_type = TensorProto.FLOAT16
del g.value_info[:]
onnx.save(m, sys.argv[2])
