"""Int8 dynamic quantisation of a UNet's MatMuls, written out as onnxruntime's quantize_dynamic does it
(onnxruntime/python/tools/quantization/operators/matmul.py, class MatMulInteger), for machines without the
onnxruntime Python package:

    MatMul(A, W)  with W a constant 2-D float weight  becomes
    DynamicQuantizeLinear(A) -> A_q (uint8), A_scale, A_zp      (one per distinct A, shared by q/k/v)
    MatMulInteger(A_q, W_q, A_zp, W_zp) -> int32                 (W_q int8, symmetric: W_zp = 0, per tensor)
    Cast(float) * (A_scale * W_scale)

onnxruntime fuses that chain into its DynamicQuantizeMatMul kernel at graph level 'extended' and above. MatMuls of
two activations (attention scores) and Conv stay float, as quantize_dynamic's defaults leave them.

    /usr/bin/python3 tools/bench/quantize_dynamic.py IN.onnx OUT.onnx [--per-channel] [--conv] [--min-elements N]
"""
import argparse
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def quantize(model: onnx.ModelProto, per_channel: bool, min_elements: int, conv: bool = False) -> tuple[onnx.ModelProto, int]:
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1

    new_nodes = []
    new_inits = []
    quantized_inputs: dict[str, tuple[str, str, str]] = {}
    count = 0
    def quantized_input(a: str, base: str) -> tuple[str, str, str]:
        if a not in quantized_inputs:
            names = (f'{a}_quantized', f'{a}_scale', f'{a}_zero_point')
            new_nodes.append(helper.make_node('DynamicQuantizeLinear', [a], list(names), name=f'{base}_QuantizeLinear'))
            quantized_inputs[a] = names
        return quantized_inputs[a]

    for node in graph.node:
        if conv and node.op_type == 'Conv' and node.input[1] in inits:
            # ConvInteger, as quantize_dynamic's ConvInteger class: onnxruntime's cpu kernel takes uint8 weights, so
            # they are stored asymmetric around 128 with one scale per tensor.
            weight = inits[node.input[1]]
            w = numpy_helper.to_array(weight).astype(np.float32)
            scale = np.float32(max(np.abs(w).max(), 1e-12) / 127.0)
            w_q = (np.clip(np.round(w / scale), -127, 127) + 128).astype(np.uint8)
            base = node.name.strip('/').replace('/', '_') or f'conv_{count}'
            new_inits += [
                numpy_helper.from_array(w_q, f'{base}_W_quantized'),
                numpy_helper.from_array(np.array(scale, dtype=np.float32), f'{base}_W_scale'),
                numpy_helper.from_array(np.array(128, dtype=np.uint8), f'{base}_W_zero_point'),
            ]
            a_q, a_scale, a_zp = quantized_input(node.input[0], base)
            out = node.output[0]
            integer = helper.make_node('ConvInteger', [a_q, f'{base}_W_quantized', a_zp, f'{base}_W_zero_point'], [f'{out}_int32'], name=f'{base}_ConvInteger')
            integer.attribute.extend(node.attribute)
            scaled = f'{out}_scaled' if len(node.input) > 2 else out
            new_nodes += [
                integer,
                helper.make_node('Cast', [f'{out}_int32'], [f'{out}_float'], to=TensorProto.FLOAT, name=f'{base}_Cast'),
                helper.make_node('Mul', [a_scale, f'{base}_W_scale'], [f'{out}_rescale'], name=f'{base}_ScaleMul'),
                helper.make_node('Mul', [f'{out}_float', f'{out}_rescale'], [scaled], name=f'{base}_Mul'),
            ]
            if len(node.input) > 2:
                bias = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32).reshape(1, -1, 1, 1)
                new_inits.append(numpy_helper.from_array(bias, f'{base}_bias_nchw'))
                new_nodes.append(helper.make_node('Add', [scaled, f'{base}_bias_nchw'], [out], name=f'{base}_BiasAdd'))
                consumers[node.input[2]] -= 1
            consumers[weight.name] -= 1
            count += 1
            continue
        weight = inits.get(node.input[1]) if node.op_type == 'MatMul' and len(node.input) == 2 else None
        if weight is None or len(weight.dims) != 2 or weight.data_type != TensorProto.FLOAT or np.prod(weight.dims) < min_elements:
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(weight).astype(np.float32)
        # Symmetric int8 in [-127, 127], as quantize_dynamic's QInt8 weights; per output column with --per-channel.
        absmax = np.abs(w).max(axis=0) if per_channel else np.array(np.abs(w).max(), dtype=np.float32)
        scale = np.where(absmax > 0, absmax / 127.0, 1.0).astype(np.float32)
        w_q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        base = node.name.strip('/').replace('/', '_') or f'matmul_{count}'
        w_q_name, w_scale_name, w_zp_name = f'{base}_W_quantized', f'{base}_W_scale', f'{base}_W_zero_point'
        new_inits += [
            numpy_helper.from_array(w_q, w_q_name),
            numpy_helper.from_array(scale.astype(np.float32), w_scale_name),
            numpy_helper.from_array(np.zeros(scale.shape, dtype=np.int8), w_zp_name),
        ]
        a_q, a_scale, a_zp = quantized_input(node.input[0], base)
        out = node.output[0]
        new_nodes += [
            helper.make_node('MatMulInteger', [a_q, w_q_name, a_zp, w_zp_name], [f'{out}_int32'], name=f'{base}_MatMulInteger'),
            helper.make_node('Cast', [f'{out}_int32'], [f'{out}_float'], to=TensorProto.FLOAT, name=f'{base}_Cast'),
            helper.make_node('Mul', [a_scale, w_scale_name], [f'{out}_rescale'], name=f'{base}_ScaleMul'),
            helper.make_node('Mul', [f'{out}_float', f'{out}_rescale'], [out], name=f'{base}_Mul'),
        ]
        count += 1
        consumers[weight.name] -= 1

    del graph.node[:]
    graph.node.extend(new_nodes)
    kept = [i for i in graph.initializer if consumers.get(i.name, 0) > 0 or any(o.name == i.name for o in graph.output)]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    # DynamicQuantizeLinear and MatMulInteger are opset 11 and 10; the exports here are opset 14+.
    return model, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('input')
    parser.add_argument('output')
    parser.add_argument('--per-channel', action='store_true', help='one weight scale per output column (default: per tensor, quantize_dynamic\'s default)')
    parser.add_argument('--conv', action='store_true', help='Conv too (ConvInteger; quantize_dynamic leaves it float by default in recent versions)')
    parser.add_argument('--min-elements', type=int, default=0, help='leave weights smaller than this float')
    args = parser.parse_args()
    model = onnx.load(args.input)
    model, count = quantize(model, args.per_channel, args.min_elements, args.conv)
    onnx.checker.check_model(model)
    onnx.save(model, args.output)
    print(f'{args.output}: {count} {"MatMuls and Convs" if args.conv else "MatMuls"} quantised to int8 (dynamic, {"per channel" if args.per_channel else "per tensor"})', file=sys.stderr)


if __name__ == '__main__':
    main()
