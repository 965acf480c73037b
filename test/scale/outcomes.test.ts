import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OUTCOME_TTL_SECONDS, OutcomeStore } from '../../src/scale/outcomes.js';
import { Keys } from '../../src/scale/redis.js';
import { HAVE_REDIS, RedisServer } from '../../tools/redis-server.js';

describe.skipIf(!HAVE_REDIS)('job outcomes in Redis', () => {
  let server: RedisServer;
  let redis: Redis;
  beforeAll(async () => {
    server = await RedisServer.start();
    redis = new Redis(server.url);
  });
  afterAll(async () => {
    redis?.disconnect();
    await server?.close();
  });

  it('GIVEN two PNGs of several MB THEN they come back byte for byte with the facts, expire in a week unless taken, and go when deleted', async () => {
    // Noise does not compress: 1400×1400 RGB is about 5.9 MB as PNG.
    const noise = randomBytes(1400 * 1400 * 3);
    const big = new Uint8Array(await sharp(noise, { raw: { width: 1400, height: 1400, channels: 3 } }).png().toBuffer());
    expect(big.byteLength).toBeGreaterThan(4_000_000);
    const small = new Uint8Array(await sharp({ create: { width: 8, height: 8, channels: 3, background: '#f00' } }).png().toBuffer());
    const store = new OutcomeStore(redis, new Keys('t'));
    const result = { images: [big, small], width: 1400, height: 1400, seed: 5, steps: 20, guidanceScale: 7.5, scheduler: 'ddim' as const, model: 'm', truncated: false, timings: { totalMs: 1, runtimeMs: 1, unetMs: 1 } };
    await store.write('job-1', { state: 'made', result });
    const back = await store.read('job-1');
    expect(back?.state).toBe('made');
    if (back?.state !== 'made') return;
    expect(Buffer.from(back.result.images[0]).equals(Buffer.from(big))).toBe(true);
    expect(Buffer.from(back.result.images[1]).equals(Buffer.from(small))).toBe(true);
    expect({ ...back.result, images: [] }).toEqual({ ...result, images: [] });
    const ttl = await redis.ttl(new Keys('t').outcome('job-1'));
    expect(ttl).toBeGreaterThan(OUTCOME_TTL_SECONDS - 60);
    expect(ttl).toBeLessThanOrEqual(OUTCOME_TTL_SECONDS);
    await store.delete('job-1');
    expect(await store.read('job-1')).toBeUndefined();

    await store.write('job-2', { state: 'failed', error: 'Too long.', identifier: 'timeout' });
    expect(await store.read('job-2')).toEqual({ state: 'failed', error: 'Too long.', identifier: 'timeout' });
    await store.write('job-3', { state: 'cancelled', by: 'u1' });
    expect(await store.read('job-3')).toEqual({ state: 'cancelled', by: 'u1' });
  });
});
