import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { AutoTokenizer, env } from '@huggingface/transformers';
import { describe, expect, it } from 'vitest';
import { loadTokenizer } from '../../src/diffusion/tokenizer.js';

// The bot tokenizes with @huggingface/tokenizers, the engine inside @huggingface/transformers v4, to keep
// transformers' whole bundle out of each worker's memory. These tests hold it to transformers.js's own
// AutoTokenizer, loaded from the same local folders (never the network).
env.allowRemoteModels = false;
env.localModelPath = join(import.meta.dirname, '..', '..');

const prompts = [
  'a red circle on the left',
  'A BIG yellow square, on a blue background!',
  "lighthouse at dusk, it's 4k, ultra-detailed",
  'café crème — naïve résumé 日本語',
  '',
  'word '.repeat(120).trim(),
];

async function referenceIds(folder: string, maxLength: number): Promise<number[][]> {
  const reference = await AutoTokenizer.from_pretrained(folder);
  return prompts.map((prompt) => {
    const encoded = reference(prompt, { padding: 'max_length', truncation: true, max_length: maxLength });
    return (encoded.input_ids.tolist() as bigint[][])[0].map(Number);
  });
}

describe('tokenizer against transformers.js AutoTokenizer', () => {
  it('GIVEN a CLIP tokenizer.json THEN both of our forms give the ids transformers.js gives', async () => {
    const folder = 'test/fixtures/models/lcm-tiny/tokenizer';
    const fromJson = loadTokenizer(folder, { form: 'tokenizer.json' });
    const fromVocab = loadTokenizer(folder, { form: 'vocab.json+merges.txt' });
    const expected = await referenceIds(folder, fromJson.maxLength);
    prompts.slice(0, 5).forEach((prompt, i) => {
      expect(fromJson.encode(prompt).ids, prompt).toEqual(expected[i]);
      expect(fromVocab.encode(prompt).ids, prompt).toEqual(expected[i]);
    });
    // Truncation is where the two differ: transformers.js cuts after adding the special tokens, so its end token
    // falls off; Python's CLIPTokenizer (what diffusers calls, and what SD was trained with) keeps it last.
    // We follow Python: the same ids up to the last place, then the end token.
    const long = fromJson.encode(prompts[5]);
    expect(long.truncated).toBe(true);
    expect(long.ids.slice(0, -1)).toEqual(expected[5].slice(0, -1));
    expect(long.ids.at(-1)).toBe(fromJson.eosTokenId);
    expect(fromVocab.encode(prompts[5]).ids).toEqual(long.ids);
  });

  const embedded = 'models/imagine-shapes/tokenizer';
  it.runIf(existsSync(join(embedded, 'tokenizer.json')))('GIVEN the embedded model THEN its ids match transformers.js', async () => {
    const ours = loadTokenizer(embedded);
    const expected = await referenceIds(embedded, ours.maxLength);
    prompts.forEach((prompt, i) => {
      if (!ours.encode(prompt).truncated) expect(ours.encode(prompt).ids, prompt).toEqual(expected[i]);
    });
  });
});
