/**
 * Metrics and /healthz scraped over HTTP while the whole bot (emulator, discord.js, journal, fair queue,
 * delivery) runs jobs: the numbers move as jobs go through, Discord's 429s and 5xx are counted, and /healthz says
 * 503 naming the check that fails.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StandInEngine } from '../../src/diffusion/engine/stand-in.js';
import type { EngineHealth } from '../../src/diffusion/types.js';
import { depthByGuild } from '../../src/metrics/bot-metrics.js';
import { eventually, startHarness, type Harness } from '../../tools/discord-emulator/harness.js';

/** A Prometheus text exposition as `name{labels}` → value (labels as prom-client writes them). */
function parse(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return values;
}

async function scrape(h: Harness): Promise<Map<string, number>> {
  const response = await fetch(`${h.app.metrics!.url}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parse(await response.text());
}

/** Polls an async `check` until it returns a value other than undefined/false. */
async function until<T>(check: () => Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function health(h: Harness): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${h.app.metrics!.url}/healthz`);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe('metrics during an emulator run', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      // One job at a time (no batching), 10 steps of 100 ms: a job runs about a second, long enough to be seen.
      env: { METRICS_PORT: '0', BATCH_IMAGES: '1', STAND_IN_STEP_MS: '100', QUEUE_MAX_PER_MEMBER: '10', EDIT_INTERVAL_MS: '300' },
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('GIVEN METRICS_PORT=0 THEN the endpoint listens on this machine only, on the port it logged', () => {
    expect(h.app.metrics!.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(h.logs.some((line) => line.includes('metrics listening') && line.includes(`${h.app.metrics!.url}/metrics`))).toBe(true);
  });

  it('GIVEN jobs going through THEN jobs by state and outcome, depth per server, wait, run and step times, images, 429s and retries move', async () => {
    const { emulator } = h;
    const before = await scrape(h);
    expect(before.get('imagine_jobs_submitted_total')).toBe(0);
    expect(before.get('imagine_jobs{state="running"}')).toBe(0);
    expect(before.get('imagine_jobs_finished_total{outcome="delivered"}')).toBe(0);
    expect(before.get('imagine_images_per_minute')).toBe(0);
    expect(before.get('imagine_engines_alive')).toBe(1);
    expect(before.get('imagine_health{check="gateway"}')).toBe(1);
    // The process' own numbers: resident memory, event-loop delay.
    expect(before.get('process_resident_memory_bytes')).toBeGreaterThan(10 * 1024 * 1024);
    expect(before.has('nodejs_eventloop_lag_p99_seconds')).toBe(true);

    // Discord answers one progress edit with 429 and another with 502: discord.js waits or retries, we count.
    emulator.injectRateLimit('PATCH /webhooks/*', { count: 1, retryAfter: 1 });
    emulator.injectServerError('PATCH /webhooks/*', { count: 1, status: 502 });
    const prompts = ['metrics one', 'metrics two', 'metrics three'];
    const handles = prompts.map((prompt) => emulator.sendCommand({ name: 'imagine', options: { prompt, steps: 10 } }));
    for (const handle of handles) await handle.waitForResponse();

    const guild = emulator.defaults.guildId;
    const during = await until(async () => {
      const values = await scrape(h);
      return values.get('imagine_jobs{state="running"}') === 1 && values.get('imagine_jobs{state="queued"}') === 2 ? values : undefined;
    }, 10_000, 'one job running, two waiting');
    expect(during.get('imagine_jobs_submitted_total')).toBe(3);
    expect(during.get('imagine_jobs_started_total')).toBe(1);
    expect(during.get(`imagine_queue_depth{guild="${guild}"}`)).toBe(2);

    for (const handle of handles) {
      await eventually(() => handle.original()?.message.attachments.some((a) => a.filename.startsWith('imagine-')), 60_000, 'the pictures');
    }
    const after = await until(async () => {
      const values = await scrape(h);
      return values.get('imagine_jobs_finished_total{outcome="delivered"}') === 3 ? values : undefined;
    }, 10_000, 'three jobs delivered');
    expect(after.get('imagine_jobs_started_total')).toBe(3);
    expect(after.get('imagine_jobs{state="running"}')).toBe(0);
    expect(after.get('imagine_jobs{state="queued"}')).toBe(0);
    expect(after.has(`imagine_queue_depth{guild="${guild}"}`)).toBe(false);
    expect(after.get('imagine_job_wait_seconds_count')).toBe(3);
    // The third job waited for the two before it, about a second each.
    expect(after.get('imagine_job_wait_seconds_sum')).toBeGreaterThan(1.5);
    expect(after.get('imagine_job_run_seconds_count')).toBe(3);
    expect(after.get('imagine_job_run_seconds_sum')).toBeGreaterThan(2.5);
    expect(after.get('imagine_step_seconds_count{model="stand-in"}')).toBe(3);
    // 100 ms a step, within what a busy machine adds.
    const perStep = after.get('imagine_step_seconds_sum{model="stand-in"}')! / 3;
    expect(perStep).toBeGreaterThan(0.09);
    expect(perStep).toBeLessThan(0.5);
    expect(after.get('imagine_images_total{model="stand-in"}')).toBe(3);
    expect(after.get('imagine_images_per_minute')).toBe(3);
    expect(after.get('imagine_discord_rate_limited_total{scope="user"}')).toBe(1);
    expect(after.get('imagine_discord_retries_total{reason="rate_limit"}')).toBe(1);
    expect(after.get('imagine_discord_retries_total{reason="server_error"}')).toBe(1);
    expect(after.get('imagine_jobs_finished_total{outcome="failed"}')).toBe(0);

    // A cancel is an outcome too.
    const cancelled = emulator.sendCommand({ name: 'imagine', options: { prompt: 'metrics cancel', steps: 50 } });
    await cancelled.waitForResponse();
    const job = await eventually(() => h.app.queue.snapshot().running[0]?.job, 10_000, 'the job running');
    h.app.queue.cancel(job.id);
    await until(async () => (await scrape(h)).get('imagine_jobs_finished_total{outcome="cancelled"}') === 1, 10_000, 'the cancel counted');
  });

  it('GIVEN everything up THEN /healthz is 200; GIVEN a journal that cannot be written THEN 503 naming it, and 200 again once it can', async () => {
    expect(await health(h)).toEqual({ status: 200, body: { status: 'ok', gateway: true, journal: true, engine: true } });
    h.app.db.pragma('query_only = ON');
    try {
      expect(await health(h)).toEqual({ status: 503, body: { status: 'unavailable', gateway: true, journal: false, engine: true } });
      expect((await scrape(h)).get('imagine_health{check="journal"}')).toBe(0);
    } finally {
      h.app.db.pragma('query_only = OFF');
    }
    expect((await health(h)).status).toBe(200);
    const head = await fetch(`${h.app.metrics!.url}/healthz`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect((await fetch(`${h.app.metrics!.url}/other`)).status).toBe(404);
    expect((await fetch(`${h.app.metrics!.url}/metrics`, { method: 'POST' })).status).toBe(405);
  });

  it('GIVEN the gateway disconnected THEN /healthz is 503 naming it', async () => {
    await h.app.client.destroy();
    expect(await health(h)).toEqual({ status: 503, body: { status: 'unavailable', gateway: false, journal: true, engine: true } });
  });
});

describe('the engine in /healthz and the metrics', () => {
  it('GIVEN no engine alive and workers replaced THEN /healthz is 503 naming the engine, and the restarts are counted', async () => {
    const engine = new StandInEngine({ msPerStep: 1, width: 64, height: 64 }) as StandInEngine & { health(): EngineHealth };
    let state: EngineHealth = { alive: 1, restarts: 0 };
    engine.health = () => state;
    const h = await startHarness({ engine, env: { METRICS_PORT: '0' } });
    try {
      expect((await health(h)).status).toBe(200);
      expect((await scrape(h)).get('imagine_worker_restarts_total')).toBe(0);
      state = { alive: 0, restarts: 2 };
      expect(await health(h)).toEqual({ status: 503, body: { status: 'unavailable', gateway: true, journal: true, engine: false } });
      const values = await scrape(h);
      expect(values.get('imagine_engines_alive')).toBe(0);
      expect(values.get('imagine_worker_restarts_total')).toBe(2);
      state = { alive: 1, restarts: 3 };
      expect((await scrape(h)).get('imagine_worker_restarts_total')).toBe(3);
    } finally {
      await h.close();
      await engine.close();
    }
  });
});

describe('bounded label sets', () => {
  it('GIVEN waiting jobs in more servers than the limit THEN the deepest queues get their own series and the rest one "other"', () => {
    const waiting = ['a', 'b', 'b', 'c', 'c', 'c', 'd', 'e', 'e'];
    expect([...depthByGuild(waiting, 2)]).toEqual([['c', 3], ['b', 2], ['other', 4]]);
    expect([...depthByGuild(waiting, 10)]).toHaveLength(5);
    expect([...depthByGuild([], 2)]).toEqual([]);
  });
});
