import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const script = fileURLToPath(new URL('../../../tools/bench/load.ts', import.meta.url));

describe('load script', () => {
  it('GIVEN 300 jobs from 30 members in 3 guilds THEN none is lost or delivered twice and waits are reported', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', script, '--jobs', '300', '--members', '30', '--guilds', '3', '--ms-per-step', '0', '--json'],
      { timeout: 110_000 },
    );
    const summary = JSON.parse(stdout.trim().split('\n').at(-1)!);
    expect(summary).toMatchObject({ jobs: 300, delivered: 300, lost: 0, duplicates: 0, unfinishedInJournal: 0 });
    // The global cap held: never more than 100 waiting.
    expect(summary.maxWaitingSeen).toBeLessThanOrEqual(100);
    expect(summary.longestWaitPerMemberMs.max).toBeGreaterThanOrEqual(summary.longestWaitPerMemberMs.median);
    expect(summary.peakHeapMiB).toBeGreaterThan(0);
  });
});
