import type { NoiseSource } from './schedulers/types.js';

/**
 * The normal stream of `torch.Generator("cpu").manual_seed(seed)` followed by `torch.randn(n, generator=…)`, for
 * float32 tensors of 16 or more elements: the noise diffusers and ComfyUI draw on the CPU, so the same model, seed,
 * scheduler and settings give their picture (GenerateParams.noise 'torch', see ./noise.ts). Also what
 * `npm run conformance` checks diffusers' stochastic scheduler tests (DDPM, Euler ancestral, LCM) with.
 *
 * As PyTorch does it (ATen: CPUGeneratorImpl, core/MT19937RNGEngine.h, core/TransformationHelper.h uniform_real,
 * native/cpu/DistributionTemplates.h normal_fill / normal_fill_AVX2): MT19937 seeded by init_genrand; n uniforms
 * u = (r & (2^24 − 1)) / 2^24; Box–Muller over blocks of 16 (u1 = 1 − data[j], u2 = data[j + 8] give data[j] =
 * ρ cos θ and data[j + 8] = ρ sin θ); when n is not a multiple of 16, 16 fresh uniforms redo the last 16 outputs.
 * Float32 transcendental functions may differ from torch's vectorised ones in the last bit.
 */
export class TorchCpuGenerator implements NoiseSource {
  private readonly mt = new Uint32Array(624);
  private index = 624;

  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new RangeError(`Expected \`seed\` to be an integer from 0 to 4294967295, got \`${seed}\``);
    }
    this.mt[0] = seed >>> 0;
    for (let i = 1; i < 624; i++) {
      const prev = this.mt[i - 1] ^ (this.mt[i - 1] >>> 30);
      this.mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
  }

  /** The next raw 32-bit MT19937 output. */
  nextUint32(): number {
    if (this.index >= 624) this.twist();
    let y = this.mt[this.index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** at::uniform_real_distribution<float>(0, 1): 24 random bits over 2^24, in [0, 1). */
  nextUniformFloat(): number {
    return (this.nextUint32() & 0xffffff) / 16777216;
  }

  fillNormal(out: Float32Array): void {
    const n = out.length;
    if (n < 16) throw new RangeError(`TorchCpuGenerator reproduces torch.randn only for 16 or more elements, got ${n}`);
    for (let i = 0; i < n; i++) out[i] = this.nextUniformFloat();
    for (let i = 0; i + 16 <= n; i += 16) boxMuller16(out, i);
    if (n % 16 !== 0) {
      const base = n - 16;
      for (let i = 0; i < 16; i++) out[base + i] = this.nextUniformFloat();
      boxMuller16(out, base);
    }
  }

  private twist(): void {
    const mt = this.mt;
    for (let i = 0; i < 624; i++) {
      const y = (mt[i] & 0x80000000) | (mt[(i + 1) % 624] & 0x7fffffff);
      let next = mt[(i + 397) % 624] ^ (y >>> 1);
      if (y & 1) next ^= 0x9908b0df;
      mt[i] = next >>> 0;
    }
    this.index = 0;
  }
}

const f32 = Math.fround;
const TWO_PI_F32 = f32(2 * Math.PI);

function boxMuller16(data: Float32Array, offset: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = f32(1 - data[offset + j]); // [0, 1) → (0, 1] for log
    const u2 = data[offset + j + 8];
    const radius = f32(Math.sqrt(f32(-2 * f32(Math.log(u1)))));
    const theta = f32(TWO_PI_F32 * u2);
    data[offset + j] = radius * f32(Math.cos(theta));
    data[offset + j + 8] = radius * f32(Math.sin(theta));
  }
}
