import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { ResultFiles } from '../../src/store/results.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

async function png(color: number): Promise<Uint8Array> {
  const buffer = await sharp({ create: { width: 4, height: 3, channels: 3, background: { r: color, g: 0, b: 0 } } })
    .png()
    .toBuffer();
  return new Uint8Array(buffer);
}

describe('ResultFiles', () => {
  it('saves whole PNGs under <jobId>-<i>.png, loads them back byte for byte, and removes them', async () => {
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'imagine-results-')), 'results');
    dirs.push(path.dirname(dir));
    const files = new ResultFiles(dir);
    const images = [await png(10), await png(200)];
    await files.save('JOB1', images);
    expect(fs.readdirSync(dir).sort()).toEqual(['JOB1-0.png', 'JOB1-1.png']); // no temporary files left
    const loaded = await files.load('JOB1', 2);
    expect(loaded!.map((bytes) => Buffer.from(bytes))).toEqual(images.map((bytes) => Buffer.from(bytes)));
    const meta = await sharp(Buffer.from(loaded![1])).metadata();
    expect([meta.width, meta.height]).toEqual([4, 3]);
    expect(await files.load('JOB1', 3)).toBeUndefined(); // one missing: not a partial result
    await files.remove('JOB1');
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('removes files of jobs it is not told to keep, including half-written temporaries', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imagine-results-'));
    dirs.push(dir);
    const files = new ResultFiles(dir);
    await files.save('KEEP', [await png(1)]);
    await files.save('DROP', [await png(2)]);
    fs.writeFileSync(path.join(dir, 'CRASHED-0.png.tmp'), 'partial');
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'not ours');
    expect(await files.removeAllExcept(new Set(['KEEP']))).toBe(2);
    expect(fs.readdirSync(dir).sort()).toEqual(['KEEP-0.png', 'notes.txt']);
  });

  it('refuses a job id that could escape the folder', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imagine-results-'));
    dirs.push(dir);
    expect(() => new ResultFiles(dir).fileFor('../etc/passwd', 0)).toThrow(/letters and digits/);
  });
});
