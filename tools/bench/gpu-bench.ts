/**
 * Per execution provider: ms per UNet call and seconds per image on one model folder (the synthetic SD 1.5 of
 * synthetic-sd15.py), at batch 1 and 4 with classifier-free guidance (2 UNet rows per image), through imagine's own
 * loader and pipeline. tools/bench/gpu-run.sh runs it on a machine with an accelerator.
 *
 *   npx tsx tools/bench/gpu-bench.ts --model DIR [--providers webgpu,cpu] [--size 512] [--steps 50] [--batches 1,4]
 *       [--calls 10] [--cpu-steps 2] [--cpu-calls 2] [--json FILE]
 *
 * A provider that is not there falls back to cpu (the loader's rule), and the row says which one ran. On cpu a
 * 50-step image of SD 1.5's size takes minutes, so cpu rows run `--cpu-steps` steps and scale the UNet's share to
 * `--steps` (said in the row).
 *
 * On webgpu the UNet's output stays in a GPU buffer and `run()` returns once the work is queued, so a call's time
 * is measured as `--calls` calls queued back to back, then the last output read back (which waits for all of them),
 * divided by the calls (tools/bench/unet-call.ts). The image rows run the webgpu loop (src/diffusion/gpu-loop.ts) and say what it copied
 * between host and GPU per step. VK_ICD_FILENAMES, when set, is in the report: SwiftShader's ICD means a software
 * device, whose times only prove the path.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { loadModel, type ExecutionProviderName } from '../../src/diffusion/model.js';
import { generate } from '../../src/diffusion/pipeline.js';
import { unetCallMs } from './unet-call.js';
import { unetFeeds, unetShapeOf } from './unet-feeds.js';

export interface GpuBenchRow {
  requested: string;
  /** The provider the sessions ran on (cpu when the requested one was not there). */
  provider: string;
  batch: number;
  size: number;
  loadMs: number;
  /** Median ms of one UNet call with 2 × batch rows. */
  unetMs: number;
  unetCalls: number;
  /** One image's wall time (generate() with count = batch, divided by batch), in s, at `steps` steps. */
  sPerImage: number;
  /** The steps the image was made with; fewer than `steps` when extrapolated. */
  stepsRun: number;
  steps: number;
  extrapolated: boolean;
  /** webgpu: what the loop copied between host and GPU, per UNet step (the image's previews included). */
  copiesPerStep?: { toHost: number; toHostBytes: number; toGpuBytes: number };
}

function list(raw: string): string[] {
  return raw.split(',').map((s) => s.trim()).filter(Boolean);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      providers: { type: 'string', default: 'webgpu,cpu' },
      size: { type: 'string', default: '512' },
      steps: { type: 'string', default: '50' },
      batches: { type: 'string', default: '1,4' },
      calls: { type: 'string', default: '10' },
      'cpu-steps': { type: 'string', default: '2' },
      'cpu-calls': { type: 'string', default: '2' },
      json: { type: 'string' },
    },
    strict: true,
  });
  if (!values.model) throw new Error('Expected `--model DIR` (a folder written by tools/bench/synthetic-sd15.py)');
  const size = Number(values.size);
  const steps = Number(values.steps);
  const rows: GpuBenchRow[] = [];
  const log = (line: string) => console.error(line);
  for (const requested of list(values.providers)) {
    const t0 = performance.now();
    const model = await loadModel(values.model, { executionProviders: [requested as ExecutionProviderName], log });
    const loadMs = performance.now() - t0;
    const provider = model.executionProvider;
    const onCpu = provider === 'cpu';
    try {
      for (const batch of list(values.batches).map(Number)) {
        const shape = { ...unetShapeOf(model, 2 * batch), height: size / model.info.latentFactor, width: size / model.info.latentFactor };
        const feeds = unetFeeds(model, shape);
        const calls = Number(onCpu ? values['cpu-calls'] : values.calls);
        await unetCallMs(model.unet.session, feeds, 1, !onCpu); // warm-up: kernels compiled, buffers allocated
        const unetMs = await unetCallMs(model.unet.session, feeds, calls, !onCpu);
        const stepsRun = onCpu ? Math.min(steps, Number(values['cpu-steps'])) : steps;
        const result = await generate(model, { prompt: 'a lighthouse on a cliff at dusk', steps: stepsRun, seed: 1, guidanceScale: 7.5, scheduler: 'euler', width: size, height: size, count: batch });
        // Extrapolated: the UNet's share scaled to `steps`, the rest (text encoder, VAE, PNG) as measured.
        const totalMs = result.timings.totalMs + (result.timings.unetMs * steps) / stepsRun - result.timings.unetMs;
        const row: GpuBenchRow = { requested, provider, batch, size, loadMs, unetMs, unetCalls: calls, sPerImage: totalMs / batch / 1000, stepsRun, steps, extrapolated: stepsRun !== steps };
        const copies = result.timings.gpuCopies;
        if (copies) row.copiesPerStep = { toHost: copies.toHost / stepsRun, toHostBytes: copies.toHostBytes / stepsRun, toGpuBytes: copies.toGpuBytes / stepsRun };
        rows.push(row);
        const copyText = row.copiesPerStep ? `, host copies per step: ${row.copiesPerStep.toHost.toFixed(2)} reads (${(row.copiesPerStep.toHostBytes / 1024).toFixed(1)} KiB down, ${(row.copiesPerStep.toGpuBytes / 1024).toFixed(1)} KiB up)` : '';
        log(`${requested} (ran on ${provider}) batch ${batch}: UNet ${row.unetMs.toFixed(1)} ms/call, ${row.sPerImage.toFixed(3)} s/image${row.extrapolated ? ` (${stepsRun} steps run, scaled to ${steps})` : ''}${copyText}`);
      }
    } finally {
      await model.release();
    }
  }
  // The Vulkan driver Dawn was pointed at, if any: SwiftShader's means a software device.
  const icd = process.env.VK_ICD_FILENAMES;
  const report = { date: new Date().toISOString(), host: os.hostname(), cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), loadAverage: os.loadavg(), vulkanIcd: icd ?? null, model: values.model, rows };
  console.log(['| requested | ran on | batch | size | load | UNet ms/call (2×batch rows) | s per image | host copies per step |', '|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.requested} | ${r.provider} | ${r.batch} | ${r.size}² | ${(r.loadMs / 1000).toFixed(1)} s | ${r.unetMs.toFixed(1)} | ${r.sPerImage.toFixed(3)}${r.extrapolated ? ` (${r.stepsRun} of ${r.steps} steps run, scaled)` : ''} | ${r.copiesPerStep ? `${r.copiesPerStep.toHost.toFixed(2)} reads, ${(r.copiesPerStep.toHostBytes / 1024).toFixed(1)} KiB down, ${(r.copiesPerStep.toGpuBytes / 1024).toFixed(1)} KiB up` : 'n/a (host loop)'} |`)].join('\n'));
  if (icd) console.log(`\nVulkan ICD: ${icd}${/swiftshader/i.test(icd) ? ' (SwiftShader: a software device; these webgpu times only prove the path)' : ''}`);
  if (values.json) writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
}

main().catch((error) => {
  console.error(`gpu-bench: ${(error as Error).message}`);
  process.exit(1);
});
