/**
 * What the VAE decode costs in memory, whole against tiled (issue 13, src/diffusion/vae-tiling.ts): each case runs
 * the pipeline's own step 8 (`decodeLatents`) once in a fresh node process, which reports its kernel high-water mark
 * (VmHWM) and its resident memory once the model is loaded; the difference is what the decode added.
 *
 *     /usr/bin/python3 tools/bench/synthetic-sd15.py --out DIR --weights full --base 32 --text-width 64 --text-layers 1 [--vae-base 128]
 *     npx tsx tools/bench/vae-memory.ts --model DIR [--sizes 512,1024,2048] [--cases whole,tiled] [--repeat 2]
 *
 * `--weights full`: folded weights (synthetic-sd15.py's default) are expanded at load, whose own high-water mark
 * would hide the decode's. synthetic-sd15.py's VAE decoder is SD 1.5's (512/512/256/128 channels at --vae-base 128, mid-block attention);
 * the small UNet and text encoder beside it are loaded but not run. "whole" decodes in one run however large (as
 * before tiling), "tiled" is what decodeLatents does now (whole at or below the native area). A whole case may be
 * skipped with `--cases` where it would not fit this machine (SD 1.5 at 2048²: 16 GiB of attention scores alone).
 * `--repeat`: decodes per process, as a bot makes picture after picture (onnxruntime's second run of a shape can
 * take more than its first).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

interface CaseResult {
  size: number;
  mode: 'whole' | 'tiled';
  /** VmRSS once the model is loaded, MiB. */
  loadedMb: number;
  /** VmHWM after the decodes, MiB. */
  peakMb: number;
  /** Decoder runs, all decodes together. */
  decoderRuns: number;
  /** Per decode. */
  seconds: number;
}

function statusMb(key: 'VmRSS' | 'VmHWM'): number {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith(`${key}:`));
  return Number(line?.split(/\s+/)[1] ?? NaN) / 1024;
}

async function child(modelDir: string, size: number, mode: 'whole' | 'tiled', repeat: number): Promise<CaseResult> {
  const { loadModel } = await import('../../src/diffusion/model.js');
  const { decodeLatents, imageShape, RunClock } = await import('../../src/diffusion/pipeline-steps.js');
  const { noiseSource } = await import('../../src/diffusion/noise.js');
  const model = await loadModel(modelDir, { log: () => {} });
  if (mode === 'whole') {
    // As before tiling: a native size as large as the picture, so the rule never tiles.
    Object.assign(model.info, { width: size, height: size });
  }
  const shape = imageShape(model, size, size);
  const latents = new Float32Array(shape.perImage);
  noiseSource('xoshiro', 1).fillNormal(latents);
  const loadedMb = statusMb('VmRSS');
  let decoderRuns = 0;
  const session = model.vaeDecoder!.session;
  const run = session.run.bind(session);
  (session as { run: unknown }).run = (...args: Parameters<typeof run>) => {
    decoderRuns++;
    return run(...args);
  };
  const t0 = performance.now();
  for (let i = 0; i < repeat; i++) await decodeLatents(model, latents, 1, shape, new RunClock());
  const seconds = (performance.now() - t0) / 1000 / repeat;
  return { size, mode, loadedMb, peakMb: statusMb('VmHWM'), decoderRuns, seconds };
}

async function main() {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      sizes: { type: 'string', default: '512,1024' },
      cases: { type: 'string', default: 'whole,tiled' },
      repeat: { type: 'string', default: '1' },
      child: { type: 'string' },
    },
  });
  if (!values.model) throw new Error('Expected `--model DIR` (a folder from tools/bench/synthetic-sd15.py)');
  if (values.child) {
    const [size, mode] = values.child.split(':');
    process.stdout.write(JSON.stringify(await child(values.model, Number(size), mode as 'whole' | 'tiled', Number(values.repeat))));
    return;
  }
  const rows: string[] = [
    `| size | decode | decoder runs | RSS loaded | peak (VmHWM) | added by ${values.repeat} decode(s) | time per decode |`,
    '|---|---|---|---|---|---|---|',
  ];
  for (const size of values.sizes.split(',').map(Number)) {
    for (const mode of values.cases.split(',')) {
      const self = fileURLToPath(import.meta.url);
      const out = spawnSync(process.execPath, ['--import', 'tsx', self, '--model', values.model, '--repeat', values.repeat, '--child', `${size}:${mode}`], { encoding: 'utf8', maxBuffer: 1 << 20 });
      if (out.status !== 0) {
        rows.push(`| ${size}² | ${mode} | failed: ${(out.stderr || String(out.signal)).trim().split('\n').pop()} | | | | |`);
        continue;
      }
      const r = JSON.parse(out.stdout) as CaseResult;
      rows.push(`| ${size}² | ${mode} | ${r.decoderRuns} | ${r.loadedMb.toFixed(0)} MiB | ${r.peakMb.toFixed(0)} MiB | ${(r.peakMb - r.loadedMb).toFixed(0)} MiB | ${r.seconds.toFixed(1)} s |`);
      console.error(rows.at(-1));
    }
  }
  console.log(rows.join('\n'));
}

await main();
