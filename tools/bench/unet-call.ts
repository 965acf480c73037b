/**
 * Timing a bare UNet `run()` honestly on every provider. On cpu `run()` returns with the output in host memory. On
 * webgpu (the UNet session of src/diffusion/model.ts puts its output in a GPU buffer) `run()` returns once the work
 * is queued, so a call is timed up to a read-back of its output, which waits for the queue; every GPU output is
 * disposed, or the buffers pile up.
 */
import * as ort from 'onnxruntime-node';
import { identityGraph } from '../../src/diffusion/gpu-graphs.js';
import { median } from './stats.js';

export interface UnetCallTimer {
  /**
   * ms per call of `calls` calls run back to back, the last one's output read back when it is in a GPU buffer
   * (which waits for all of them): the read-back's cost is shared among the calls.
   */
  callMs(feeds: Record<string, ort.Tensor>, calls: number): Promise<number>;
  release(): Promise<void>;
}

/** A timer for `session`; `onGpu`: its outputs stay in GPU buffers (the webgpu UNet session). */
export async function unetCallTimer(session: ort.InferenceSession, onGpu: boolean): Promise<UnetCallTimer> {
  if (!onGpu) {
    return {
      async callMs(feeds, calls) {
        const t0 = performance.now();
        for (let i = 0; i < calls; i++) await session.run(feeds);
        return (performance.now() - t0) / calls;
      },
      async release() {},
    };
  }
  const outputType = session.outputMetadata[0].isTensor ? session.outputMetadata[0].type : 'float32';
  const read = await ort.InferenceSession.create(identityGraph(outputType === 'float16' ? 'float16' : 'float32'), {
    executionProviders: ['webgpu'],
    preferredOutputLocation: 'cpu',
  });
  return {
    async callMs(feeds, calls) {
      const t0 = performance.now();
      let last: ort.Tensor | undefined;
      for (let i = 0; i < calls; i++) {
        last?.dispose();
        last = (await session.run(feeds))[session.outputNames[0]];
      }
      await read.run({ x: last! });
      last!.dispose();
      return (performance.now() - t0) / calls;
    },
    release: () => read.release(),
  };
}

/**
 * Median ms of one UNet call. cpu: each call timed alone. webgpu (output in a GPU buffer): `calls` calls queued,
 * the last read back, the total divided by `calls`, 3 rounds.
 */
export async function unetCallMs(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, calls: number, onGpu: boolean): Promise<number> {
  const timer = await unetCallTimer(session, onGpu);
  try {
    const times: number[] = [];
    if (onGpu) for (let r = 0; r < 3; r++) times.push(await timer.callMs(feeds, calls));
    else for (let i = 0; i < calls; i++) times.push(await timer.callMs(feeds, 1));
    return median(times);
  } finally {
    await timer.release();
  }
}
