/**
 * Held-out evaluation of the embedded model (or any shapes model):
 *
 *   npm run eval -- [--model DIR] [--steps 20] [--guidance 7.5] [--scheduler NAME] [--noise torch|xoshiro] [--limit N]
 *                   [--out FILE] [--json FILE]
 *
 * Generates the prompts of src/eval/heldout.json (phrasings never seen in training) with their fixed seeds through
 * the normal pipeline, scores each picture with the checker in src/eval/checker.ts, prints accuracy per attribute
 * against the targets, and writes a contact sheet (default out/eval/contact-sheet.png; green frame = all stated
 * attributes right). Exit code 0 when every target is met, 1 when not, 2 on bad arguments.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModel } from '../diffusion/model.js';
import { resolveModelDir } from '../diffusion/model-path.js';
import { NOISE_NAMES, SCHEDULER_NAMES, type NoiseName, type SchedulerName } from '../diffusion/types.js';
import { evalProgress } from '../eval/progress.js';
import { contactSheet, formatReport, loadHeldout, runEval, TARGETS } from '../eval/run-eval.js';

function fail(message: string): never {
  console.error(`eval: ${message}`);
  process.exit(2);
}

function numberArg(name: string, raw: string | undefined, integer: boolean): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    fail(`Expected \`--${name}\` to be ${integer ? 'an integer' : 'a number'}, got \`${raw}\``);
  }
  return value;
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        model: { type: 'string' },
        steps: { type: 'string' },
        guidance: { type: 'string' },
        scheduler: { type: 'string' },
        noise: { type: 'string' },
        limit: { type: 'string' },
        out: { type: 'string' },
        json: { type: 'string' },
      },
      strict: true,
    }));
  } catch (error) {
    fail((error as Error).message);
  }
  const scheduler = values.scheduler;
  if (scheduler !== undefined && !(SCHEDULER_NAMES as readonly string[]).includes(scheduler)) {
    fail(`Expected \`--scheduler\` to be one of ${SCHEDULER_NAMES.join(', ')}, got \`${scheduler}\``);
  }
  const noise = values.noise;
  if (noise !== undefined && !(NOISE_NAMES as readonly string[]).includes(noise)) {
    fail(`Expected \`--noise\` to be one of ${NOISE_NAMES.join(', ')}, got \`${noise}\``);
  }
  const limit = numberArg('limit', values.limit, true);
  if (limit !== undefined && limit < 1) fail(`Expected \`--limit\` to be at least 1, got \`${limit}\``);
  const items = loadHeldout().slice(0, limit);
  const dir = resolveModelDir(values.model);
  const model = await loadModel(dir);
  try {
    const report = await runEval(model, items, {
      steps: numberArg('steps', values.steps, true),
      guidanceScale: numberArg('guidance', values.guidance, false),
      scheduler: scheduler as SchedulerName | undefined,
      noise: noise as NoiseName | undefined,
      onItem: evalProgress(process.stderr),
    });
    console.log(`model ${dir}`);
    console.log(formatReport(report));

    const out = resolve(values.out ?? 'out/eval/contact-sheet.png');
    mkdirSync(dirname(out), { recursive: true });
    const tiles = report.results.map((r) => ({
      image: r.image,
      caption: r.item.prompt,
      pass: Object.values(r.score).every(Boolean),
    }));
    writeFileSync(out, await contactSheet(tiles, { columns: 12 }));
    console.log(`contact sheet: ${out}`);
    if (values.json) {
      const summary = {
        model: dir,
        steps: report.steps,
        guidanceScale: report.guidanceScale,
        scheduler: report.scheduler,
        noise: report.noise,
        prompts: report.results.length,
        tally: report.tally,
        msPerImage: Math.round(report.msPerImage),
        failures: report.results
          .filter((r) => !Object.values(r.score).every(Boolean))
          .map((r) => ({ prompt: r.item.prompt, seed: r.item.seed, score: r.score, seen: { ...r.seen, objects: r.seen.objects.map(({ color, shape, position, fill }) => ({ color, shape, position, fill: Math.round(fill * 100) / 100 })) } })),
      };
      mkdirSync(dirname(resolve(values.json)), { recursive: true });
      writeFileSync(values.json, JSON.stringify(summary, null, 1) + '\n');
    }
    const met = Object.entries(TARGETS).every(([attr, target]) => {
      const t = report.tally[attr as keyof typeof report.tally];
      return t === undefined || t.correct / t.total >= target!;
    });
    process.exitCode = met ? 0 : 1;
  } finally {
    await model.release();
  }
}

await main();
