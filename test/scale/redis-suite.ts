/**
 * What the in-process scale-out tests share: one real redis-server per test file, a temporary directory, cleanups
 * run after each test in reverse order, a fresh key prefix per test, and a poll that waits for a condition.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { RedisServer } from '../../tools/redis-server.js';

/** Polls `check` until it holds; throws naming `what` after `timeoutMs` (generous: the CI box is slow and busy). */
export async function until(check: () => boolean | Promise<boolean>, what: string | (() => string), timeoutMs = 60_000, pollMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
    await sleep(pollMs);
  }
}

/** Registers the file's beforeAll/afterEach/afterAll; call once inside the describe block. */
export function redisSuite(tempPrefix: string) {
  let server: RedisServer | undefined;
  let dir: string | undefined;
  let n = 0;
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  beforeAll(async () => {
    server = await RedisServer.start();
    dir = mkdtempSync(path.join(tmpdir(), tempPrefix));
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return {
    /** The redis-server's URL. */
    get url(): string {
      return server!.url;
    },
    /** The file's temporary directory. */
    get dir(): string {
      return dir!;
    },
    /** Run after the current test, last registered first. */
    cleanups,
    /** A key prefix no other test of the file uses. */
    nextPrefix: (): string => `p${++n}`,
  };
}
