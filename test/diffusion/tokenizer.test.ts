import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadTokenizer } from '../../src/diffusion/tokenizer.js';

const MODELS = join(import.meta.dirname, '..', 'fixtures', 'models');
// Expected ids from an independent re-implementation of openai/CLIP's simple_tokenizer.py (build-test-models.py).
const expected = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'clip-tokenizer-expected.json'), 'utf8')) as {
  bos: number;
  eos: number;
  maxLength: number;
  cases: { prompt: string; ids: number[] }[];
};

describe('loadTokenizer', () => {
  const fromJson = loadTokenizer(join(MODELS, 'lcm-tiny', 'tokenizer'), { form: 'tokenizer.json' });
  const fromVocab = loadTokenizer(join(MODELS, 'lcm-tiny', 'tokenizer'), { form: 'vocab.json+merges.txt' });
  const sdTiny = loadTokenizer(join(MODELS, 'sd-tiny', 'tokenizer'));

  it('GIVEN a folder without tokenizer.json THEN it builds one from vocab.json and merges.txt', () => {
    expect(sdTiny.form).toBe('vocab.json+merges.txt');
    expect(loadTokenizer(join(MODELS, 'lcm-tiny', 'tokenizer')).form).toBe('tokenizer.json');
  });

  it.each(expected.cases.map((c) => [c.prompt.slice(0, 40), c] as const))(
    'GIVEN %j THEN both forms give the reference CLIP ids',
    (_, { prompt, ids }) => {
      expect(fromJson.rawIds(prompt)).toEqual(ids);
      expect(fromVocab.rawIds(prompt)).toEqual(ids);
      expect(sdTiny.rawIds(prompt)).toEqual(ids);
    },
  );

  it('GIVEN a short prompt THEN it is start, tokens, end, then end-token padding to 77', () => {
    const { ids, truncated } = sdTiny.encode('a photo of a cat');
    const reference = expected.cases[0].ids;
    expect(truncated).toBe(false);
    expect(ids).toHaveLength(77);
    expect(ids.slice(0, reference.length)).toEqual(reference);
    expect(ids[0]).toBe(expected.bos);
    expect(new Set(ids.slice(reference.length))).toEqual(new Set([expected.eos]));
  });

  it('GIVEN the SD 2.x pad token "!" THEN padding uses its id', () => {
    const sd2 = loadTokenizer(join(MODELS, 'sd-tiny-fp16', 'tokenizer'));
    const vocab = JSON.parse(readFileSync(join(MODELS, 'sd-tiny-fp16', 'tokenizer', 'vocab.json'), 'utf8')) as Record<string, number>;
    const bang = vocab['!'];
    const { ids } = sd2.encode('a cat');
    expect(sd2.padTokenId).toBe(bang);
    expect(ids.at(-1)).toBe(bang);
    expect(ids.filter((id) => id === expected.eos)).toHaveLength(1);
  });

  it('GIVEN a prompt longer than 77 tokens THEN it is cut, the end token kept last, and truncation reported', () => {
    const long = expected.cases.find((c) => c.ids.length > 77)!;
    for (const tokenizer of [fromJson, fromVocab]) {
      const { ids, truncated } = tokenizer.encode(long.prompt);
      expect(truncated).toBe(true);
      expect(ids).toHaveLength(77);
      expect(ids.slice(0, 76)).toEqual(long.ids.slice(0, 76));
      expect(ids[76]).toBe(expected.eos);
    }
  });

  it('GIVEN a prompt of exactly 77 tokens THEN nothing is truncated', () => {
    const word = 'a';
    const perWord = sdTiny.rawIds(word).length - 2;
    const prompt = Array.from({ length: 75 / perWord }, () => word).join(' ');
    const result = sdTiny.encode(prompt);
    expect(sdTiny.rawIds(prompt)).toHaveLength(77);
    expect(result.truncated).toBe(false);
  });

  it('GIVEN a maxLength from the encoder THEN it pads to that length', () => {
    const short = loadTokenizer(join(MODELS, 'sd-tiny', 'tokenizer'), { maxLength: 16 });
    expect(short.encode('a photo of a cat').ids).toHaveLength(16);
    expect(short.encode(expected.cases.at(-1)!.prompt).truncated).toBe(true);
  });
});
