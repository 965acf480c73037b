import { describe, expect, it } from 'vitest';
import { DDIMScheduler } from '../../../src/diffusion/schedulers/ddim.js';
import { createScheduler } from '../../../src/diffusion/schedulers/index.js';
import type { LinearStep, Scheduler } from '../../../src/diffusion/schedulers/types.js';

// The SD 1.x training schedule as diffusers' scheduler configs give it (e.g. runwayml/stable-diffusion-v1-5,
// scheduler/scheduler_config.json): scaled_linear betas 0.00085 → 0.012 over 1000 steps.
const SD15 = { num_train_timesteps: 1000, beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', steps_offset: 1, timestep_spacing: 'leading' };

/** x0 and x_{t−1} from a LinearStep's coefficients, as the WebGPU step graph computes them. */
function applyLinear(c: LinearStep, x: Float32Array, m: Float32Array): { prev: Float32Array; x0: Float32Array } {
  const x0 = x.map((xi, i) => {
    const v = c.x0Sample * xi + c.x0Output * m[i];
    return c.clip === undefined ? v : Math.min(Math.max(v, -c.clip), c.clip);
  });
  return { x0, prev: x.map((xi, i) => c.prevSample * xi + c.prevOutput * m[i] + c.prevX0 * x0[i]) };
}

function values(n: number, seed: number, scale: number): Float32Array {
  // A fixed, varied pattern (no RNG needed): sines of different frequencies.
  return Float32Array.from({ length: n }, (_, i) => scale * Math.sin(seed * 1.7 + i * 0.61));
}

const CASES: [string, string, Record<string, unknown>][] = [
  ['ddim', 'epsilon', { ...SD15, prediction_type: 'epsilon', clip_sample: false, set_alpha_to_one: false }],
  ['ddim', 'v_prediction, clipped', { ...SD15, prediction_type: 'v_prediction', clip_sample: true, set_alpha_to_one: false }],
  ['ddim', 'sample', { ...SD15, prediction_type: 'sample', clip_sample: false }],
  ['euler', 'epsilon', { ...SD15, prediction_type: 'epsilon' }],
  ['euler', 'v_prediction', { ...SD15, prediction_type: 'v_prediction' }],
];

describe('LinearStep', () => {
  for (const [name, kind, config] of CASES) {
    it(`GIVEN ${name} (${kind}) THEN its coefficients give step()'s x_{t−1} and x0 at every step of a 10-step schedule`, () => {
      const stepper = createScheduler(name as 'ddim', config) as Scheduler;
      const linear = createScheduler(name as 'ddim', config) as Scheduler;
      stepper.setTimesteps(10);
      linear.setTimesteps(10);
      let x = values(64, 1, stepper.initNoiseSigma);
      let worst = 0;
      for (const [k, t] of stepper.timesteps.entries()) {
        const m = values(64, k + 2, 1);
        // Both schedulers scale their input first, as the loop does (Euler keeps its step index from it).
        stepper.scaleModelInput(x, t);
        linear.scaleModelInput(x, t);
        const expected = stepper.step(m, t, x);
        const coefficients = linear.linearStep!(t)!;
        const got = applyLinear(coefficients, x, m);
        for (let i = 0; i < x.length; i++) {
          const scale = Math.max(1, Math.abs(expected.prevSample[i]));
          worst = Math.max(worst, Math.abs(got.prev[i] - expected.prevSample[i]) / scale, Math.abs(got.x0[i] - expected.predOriginalSample![i]) / scale);
        }
        x = expected.prevSample.slice();
      }
      // float32 rounding of a different but equal algebra: a few ulps of values about 1–15.
      expect(worst).toBeLessThan(1e-5);
    });
  }

  it('GIVEN DDIM with η > 0 THEN its step is not linear, and euler_a has no linearStep', () => {
    const ddim = new DDIMScheduler(SD15, { eta: 0.5 });
    ddim.setTimesteps(10);
    expect(ddim.linearStep?.(ddim.timesteps[0])).toBeUndefined();
    expect(createScheduler('euler_a', SD15).linearStep).toBeUndefined();
  });
});
