/**
 * Random input for /imagine's option parsing (seeded, bounded): it never crashes with anything but a UserError,
 * never takes long, and every refusal is one clear line a member can read in Discord.
 */
import { describe, expect, it } from 'vitest';
import { isUserError } from '../../src/errors.js';
import { buildGenerateParams, type ImagineInput, type ImagineLimits } from '../../src/jobs/generate-params.js';
import { findBannedWord } from '../../src/moderation/banned-words.js';

/** mulberry32: a tiny seeded PRNG, so a failing case can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const INTERESTING = [
  0x0, 0x9, 0xa, 0xd, 0x1b, 0x7f, 0x85, 0xad, 0x200b, 0x200d, 0x2028, 0x2029, 0x202e, 0x2066, 0x3164, 0x2800, 0xfeff,
  0xfffd, 0xd800, 0xdfff, 0x0301, 0x0336, 0x1f600, 0x1f3f3, 0xfe0f, 0xe0067, 0x10ffff, 0x60, 0x2a, 0x5f, 0x7c, 0x5b,
  0x5d, 0x28, 0x29, 0x40, 0x3c, 0x3e, 0x23,
];

function randomText(random: () => number, maxLength: number): string {
  const length = Math.floor(random() * maxLength);
  let text = '';
  for (let i = 0; i < length; i++) {
    const pick = random();
    if (pick < 0.4) text += String.fromCharCode(0x20 + Math.floor(random() * 0x5f));
    else if (pick < 0.7) text += String.fromCodePoint(INTERESTING[Math.floor(random() * INTERESTING.length)]!);
    else if (pick < 0.85) text += String.fromCharCode(Math.floor(random() * 0x10000));
    else text += String.fromCodePoint(Math.floor(random() * 0x110000));
  }
  return text;
}

/** Letters, spaces and punctuation only: prompts that should mostly be accepted. */
function printable(random: () => number, maxLength: number): string {
  const length = 1 + Math.floor(random() * maxLength);
  let text = '';
  for (let i = 0; i < length; i++) text += String.fromCharCode(0x20 + Math.floor(random() * 0x5f));
  return text;
}

function randomNumber(random: () => number): number | null {
  if (random() < 0.6) return null;
  const choices = [null, NaN, Infinity, -Infinity, -1, 0, 1, 0.5, 2 ** 53, -(2 ** 31), 2 ** 32, 1e308, Math.floor(random() * 200)];
  return choices[Math.floor(random() * choices.length)]!;
}

const limits = (random: () => number): ImagineLimits => ({
  stepsDefault: 20,
  stepsMax: 50,
  guidanceDefault: 7.5,
  model: { width: 512, height: 512, latentFactor: 8, fixedSize: random() < 0.2 },
  findBannedWord: (text) => findBannedWord(text, ['dragon', 'sea serpent', 'ass']),
  randomSeed: () => 42,
});

describe('/imagine option parsing under random input', () => {
  it('GIVEN 3000 random option sets THEN each is params or one clear UserError line, quickly', () => {
    const random = prng(20261128);
    const started = performance.now();
    let accepted = 0;
    for (let round = 0; round < 3000; round++) {
      const input: ImagineInput = {
        prompt: random() < 0.05 ? null : random() < 0.4 ? printable(random, 120) : randomText(random, random() < 0.1 ? 1200 : 80),
        negative: random() < 0.5 ? null : randomText(random, 60),
        steps: randomNumber(random),
        seed: randomNumber(random),
        guidance: randomNumber(random),
        scheduler: random() < 0.7 ? null : random() < 0.5 ? 'euler_a' : randomText(random, 3000),
        aspect: random() < 0.7 ? null : random() < 0.5 ? 'portrait' : randomText(random, 3000),
      };
      try {
        const params = buildGenerateParams(input, limits(random));
        accepted++;
        expect(params.prompt.trim().length).toBeGreaterThan(0);
        expect(params.steps).toBeGreaterThanOrEqual(1);
        expect(params.steps).toBeLessThanOrEqual(50);
      } catch (error) {
        if (!isUserError(error)) throw new Error(`round ${round}: not a UserError: ${String(error)}`);
        const { message } = error;
        expect(message.length, `round ${round}`).toBeGreaterThan(10);
        expect(message.length, `round ${round}`).toBeLessThanOrEqual(500);
        expect(/[\n\r\u2028\u2029\u0085]/.test(message), `round ${round}: ${JSON.stringify(message)}`).toBe(false);
        expect(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(message), `round ${round}: lone surrogate`).toBe(false);
      }
    }
    expect(accepted).toBeGreaterThan(10);
    // A generous bound for a slow, busy machine: 3000 parses take milliseconds each at most.
    expect(performance.now() - started).toBeLessThan(30_000);
  });
});
