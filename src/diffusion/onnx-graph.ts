/**
 * A few-node ONNX model written from code, for the small graphs the WebGPU loop runs beside the UNet (guidance and
 * the scheduler's step, the preview, copies to and from the GPU): the protobuf wire format of onnx.proto
 * (onnx/onnx, onnx/onnx.proto: ModelProto, GraphProto, NodeProto, ValueInfoProto, TensorProto), only the fields
 * these graphs use. Field numbers are onnx.proto's.
 */

/** ONNX TensorProto.DataType codes (onnx.proto). */
export const ONNX_TYPE = { float32: 1, int64: 7, float16: 10 } as const;
/** The element types these graphs use, by onnxruntime-node's tensor type names. */
export type OnnxTypeName = keyof typeof ONNX_TYPE;

/** A graph input or output: its element type and dims (a string is a symbolic dim; no dims: any rank). */
export interface ValueInfo {
  name: string;
  type: OnnxTypeName;
  dims?: readonly (number | string)[];
}

/** An attribute of a node: an int, a float or a list of ints. */
export type Attribute = { name: string; int: number } | { name: string; float: number } | { name: string; ints: readonly number[] };

/** One node of the default (ai.onnx) domain. */
export interface GraphNode {
  op: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attributes?: readonly Attribute[];
}

/** A constant float32 initializer. */
export interface Initializer {
  name: string;
  dims: readonly number[];
  values: readonly number[];
}

/** A whole graph: its values by name, its nodes in topological order. */
export interface GraphSpec {
  name: string;
  inputs: readonly ValueInfo[];
  outputs: readonly ValueInfo[];
  nodes: readonly GraphNode[];
  initializers?: readonly Initializer[];
  /** The default-domain opset (default 17). */
  opset?: number;
  /** ModelProto.producer_name (default none). */
  producer?: string;
  /** ModelProto.ir_version (default 8: onnxruntime 1.30 reads up to 11). */
  irVersion?: number;
}

/** The serialized ModelProto of `spec`, ready for `InferenceSession.create(bytes)`. */
export function onnxModel(spec: GraphSpec): Uint8Array {
  const graph = new Writer();
  for (const node of spec.nodes) graph.message(1, nodeProto(node));
  graph.string(2, spec.name);
  for (const init of spec.initializers ?? []) graph.message(5, tensorProto(init));
  for (const input of spec.inputs) graph.message(11, valueInfoProto(input));
  for (const output of spec.outputs) graph.message(12, valueInfoProto(output));
  const model = new Writer();
  model.varint(1, spec.irVersion ?? 8);
  if (spec.producer !== undefined) model.string(2, spec.producer);
  model.message(7, graph.bytes());
  const opset = new Writer();
  opset.string(1, '');
  opset.varint(2, spec.opset ?? 17);
  model.message(8, opset.bytes());
  return model.bytes();
}

function nodeProto(node: GraphNode): Uint8Array {
  const w = new Writer();
  for (const input of node.inputs) w.string(1, input);
  for (const output of node.outputs) w.string(2, output);
  w.string(4, node.op);
  for (const attribute of node.attributes ?? []) {
    const a = new Writer();
    a.string(1, attribute.name);
    // AttributeProto: f = 2, i = 3, ints = 8; type = 20 (FLOAT 1, INT 2, INTS 7).
    if ('int' in attribute) {
      a.varint(3, attribute.int);
      a.varint(20, 2);
    } else if ('float' in attribute) {
      a.float(2, attribute.float);
      a.varint(20, 1);
    } else {
      for (const i of attribute.ints) a.varint(8, i);
      a.varint(20, 7);
    }
    w.message(5, a.bytes());
  }
  return w.bytes();
}

function valueInfoProto({ name, type, dims }: ValueInfo): Uint8Array {
  const tensorType = new Writer();
  tensorType.varint(1, ONNX_TYPE[type]);
  if (dims) {
    const shape = new Writer();
    for (const d of dims) {
      const dim = new Writer();
      if (typeof d === 'number') dim.varint(1, d);
      else dim.string(2, d);
      shape.message(1, dim.bytes());
    }
    tensorType.message(2, shape.bytes());
  }
  const typeProto = new Writer();
  typeProto.message(1, tensorType.bytes());
  const w = new Writer();
  w.string(1, name);
  w.message(2, typeProto.bytes());
  return w.bytes();
}

function tensorProto({ name, dims, values }: Initializer): Uint8Array {
  const w = new Writer();
  for (const d of dims) w.varint(1, d);
  w.varint(2, ONNX_TYPE.float32);
  w.string(8, name);
  const raw = new Float32Array(values);
  w.bytesField(9, new Uint8Array(raw.buffer)); // raw_data, little-endian as onnx.proto asks
  return w.bytes();
}

/** Protobuf wire format: varint (type 0), 32-bit (type 5) and length-delimited (type 2) fields. */
class Writer {
  private readonly parts: number[] = [];

  private raw(n: number): void {
    // Non-negative integers below 2^53: enough for every field here.
    while (n >= 0x80) {
      this.parts.push((n % 0x80) | 0x80);
      n = Math.floor(n / 0x80);
    }
    this.parts.push(n);
  }
  varint(field: number, value: number): void {
    if (!Number.isInteger(value) || value < 0) throw new RangeError(`Expected a non-negative integer, got ${value}`);
    this.raw(field * 8);
    this.raw(value);
  }
  float(field: number, value: number): void {
    this.raw(field * 8 + 5);
    this.parts.push(...new Uint8Array(Float32Array.of(value).buffer));
  }
  bytesField(field: number, bytes: Uint8Array): void {
    this.raw(field * 8 + 2);
    this.raw(bytes.length);
    for (const b of bytes) this.parts.push(b);
  }
  string(field: number, value: string): void {
    this.bytesField(field, new TextEncoder().encode(value));
  }
  message(field: number, bytes: Uint8Array): void {
    this.bytesField(field, bytes);
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}
