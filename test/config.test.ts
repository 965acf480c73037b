import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config.js';

// Shaped like a real token (id.timestamp.hmac) but not one.
const TOKEN = 'MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB';

function errorOf(env: Record<string, string | undefined>): string {
  try {
    parseConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected parseConfig to throw');
}

describe('parseConfig', () => {
  it('GIVEN only a token THEN every other key takes its documented default', () => {
    const config = parseConfig({ DISCORD_TOKEN: TOKEN });
    expect(config).toMatchObject({
      discordToken: TOKEN,
      discordApiUrl: undefined,
      modelDir: undefined,
      dataDir: './data',
      ortCacheDir: 'data/ort-cache',
      executionProviders: ['cpu'],
      engine: 'workers',
      engineWorkers: 1,
      queueMaxPerMember: 2,
      queueMaxTotal: 100,
      jobTimeoutMs: 600_000,
      stepsHardCap: 150,
      stepsDefault: 20,
      stepsMax: 50,
      guidanceDefault: undefined,
      editIntervalMs: 1500,
      editsPerChannelPerMinute: 30,
      playgroundPort: 3210,
      metricsPort: undefined,
      metricsHost: '127.0.0.1',
    });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.executionProviders)).toBe(true);
  });

  it.each([
    ['unset', undefined],
    ['empty (as .env.example leaves it)', ''],
    ['blank', '   '],
  ])('GIVEN an %s token THEN the config is valid with no token: the bot runs in the local playground', (_label, token) => {
    const config = parseConfig(token === undefined ? {} : { DISCORD_TOKEN: token });
    expect(config.discordToken).toBeUndefined();
    expect(config.playgroundPort).toBe(3210);
  });

  it('GIVEN PLAYGROUND_PORT THEN 0 (any free port) to 65535 is accepted, anything else refused in one line', () => {
    expect(parseConfig({ PLAYGROUND_PORT: '0' }).playgroundPort).toBe(0);
    expect(parseConfig({ PLAYGROUND_PORT: '8080' }).playgroundPort).toBe(8080);
    expect(errorOf({ PLAYGROUND_PORT: '70000' })).toMatch(/Expected `PLAYGROUND_PORT` to be an integer from 0 to 65535/);
  });

  it.each([
    ['not three parts', 'hello', /does not look like a bot token/],
    ['spaces inside', 'abc def.ghij.klmnopqrstuvwxyz0123456789', /does not look like a bot token/],
  ])('GIVEN a %s token THEN it is refused with one line', (_label, token, pattern) => {
    const message = errorOf({ DISCORD_TOKEN: token });
    expect(message).toMatch(pattern);
    expect(message).not.toContain('\n');
  });

  it('GIVEN no model-library keys THEN MODELS_DIR is models/, the Hub is huggingface.co and there is no HF token', () => {
    expect(parseConfig({})).toMatchObject({ modelsDir: 'models/', hfToken: undefined, hfEndpoint: 'https://huggingface.co' });
  });

  it('GIVEN MODELS_DIR, HF_TOKEN and HF_ENDPOINT THEN each is parsed (the endpoint without its trailing slash)', () => {
    expect(parseConfig({ MODELS_DIR: '/srv/models', HF_TOKEN: ' hf_abc123 ', HF_ENDPOINT: 'http://127.0.0.1:9/' })).toMatchObject({
      modelsDir: '/srv/models',
      hfToken: 'hf_abc123',
      hfEndpoint: 'http://127.0.0.1:9',
    });
  });

  it('GIVEN a malformed HF_TOKEN or HF_ENDPOINT THEN one line names the key, never echoing the token', () => {
    const message = errorOf({ HF_TOKEN: 'secret-value' });
    expect(message).toMatch(/HF_TOKEN does not look like a Hugging Face token/);
    expect(message).not.toContain('secret-value');
    expect(errorOf({ HF_ENDPOINT: 'ftp://mirror' })).toBe('Expected `HF_ENDPOINT` to be an http(s) URL, got `ftp://mirror`');
  });

  it('GIVEN a token written with a "Bot " prefix THEN the prefix is dropped', () => {
    expect(parseConfig({ DISCORD_TOKEN: `Bot ${TOKEN}` }).discordToken).toBe(TOKEN);
  });

  it('GIVEN every key set THEN each is parsed', () => {
    const config = parseConfig({
      DISCORD_TOKEN: TOKEN,
      DISCORD_API_URL: 'http://127.0.0.1:9999/api',
      MODEL_DIR: 'models/x',
      DATA_DIR: '/tmp/d',
      EXECUTION_PROVIDERS: 'CUDA, cpu',
      SAMPLER: 'stand-in',
      SAMPLER_WORKERS: '3',
      STAND_IN_STEP_MS: '0',
      QUEUE_MAX_PER_MEMBER: '5',
      QUEUE_MAX_TOTAL: '7',
      JOB_TIMEOUT_SECONDS: '30',
      STEPS_HARD_CAP: '80',
      EDIT_INTERVAL_MS: '0',
    });
    expect(config).toMatchObject({
      discordApiUrl: 'http://127.0.0.1:9999/api',
      modelDir: 'models/x',
      dataDir: '/tmp/d',
      ortCacheDir: '/tmp/d/ort-cache',
      executionProviders: ['cuda', 'cpu'],
      engine: 'stand-in',
      engineWorkers: 3,
      standInStepMs: 0,
      queueMaxPerMember: 5,
      queueMaxTotal: 7,
      jobTimeoutMs: 30_000,
      stepsHardCap: 80,
      editIntervalMs: 0,
    });
  });

  it.each([
    [{ SAMPLER_WORKERS: '0' }, 'Expected `SAMPLER_WORKERS` to be an integer from 1 to 16, got `0`'],
    [{ SAMPLER_WORKERS: '1.5' }, 'Expected `SAMPLER_WORKERS` to be an integer from 1 to 16, got `1.5`'],
    [{ QUEUE_MAX_TOTAL: 'lots' }, 'Expected `QUEUE_MAX_TOTAL` to be an integer from 1 to 100000, got `lots`'],
    [{ STEPS_HARD_CAP: '5000' }, 'Expected `STEPS_HARD_CAP` to be an integer from 1 to 1000, got `5000`'],
    [{ DISCORD_API_URL: 'ftp://x' }, 'Expected `DISCORD_API_URL` to be an http(s) URL, got `ftp://x`'],
    [{ DISCORD_API_URL: 'not a url' }, 'Expected `DISCORD_API_URL` to be an http(s) URL, got `not a url`'],
    [{ DISCORD_API_URL: 'http://proxy.example.com/api' }, 'Expected `DISCORD_API_URL` to use https unless it points at this machine (127.0.0.1, ::1, localhost), got `http://proxy.example.com/api`'],
    [{ DISCORD_API_URL: 'http://admin:hunter2@proxy.example.com/api' }, 'Expected `DISCORD_API_URL` to use https unless it points at this machine (127.0.0.1, ::1, localhost), got `http://proxy.example.com/api`'],
    [{ DISCORD_API_URL: 'ftp://admin:hunter2@x/' }, 'Expected `DISCORD_API_URL` to be an http(s) URL, got `ftp://x/`'],
    [{ JOB_RETENTION_DAYS: '0' }, 'Expected `JOB_RETENTION_DAYS` to be an integer from 1 to 3650, got `0`'],
    [{ EXECUTION_PROVIDERS: 'cpu,tpu' }, /Expected `EXECUTION_PROVIDERS` to be a comma-separated list of/],
    [{ SAMPLER: 'magic' }, 'Expected `SAMPLER` to be `workers` or `stand-in`, got `magic`'],
    [{ GUIDANCE_DEFAULT: '-1' }, 'Expected `GUIDANCE_DEFAULT` to be a number from 0 to 30, got `-1`'],
    [{ STEPS_MAX: '200' }, 'Expected `STEPS_MAX` (200) to be at most `STEPS_HARD_CAP` (150)'],
    [{ STEPS_DEFAULT: '60' }, 'Expected `STEPS_DEFAULT` (60) to be at most `STEPS_MAX` (50)'],
  ] as const)('GIVEN %o THEN the error names the key, the range and the value', (extra, expected) => {
    const message = errorOf({ DISCORD_TOKEN: TOKEN, ...extra });
    if (typeof expected === 'string') expect(message).toBe(expected);
    else expect(message).toMatch(expected);
  });

  it.each(['http://127.0.0.1:8080/api', 'http://localhost:3000/api', 'http://[::1]:9/api', 'https://proxy.example.com/api'])(
    'GIVEN DISCORD_API_URL %s THEN it is accepted (https, or plain http to this machine)',
    (url) => {
      expect(parseConfig({ DISCORD_TOKEN: TOKEN, DISCORD_API_URL: url }).discordApiUrl).toBe(url);
    },
  );

  it('GIVEN METRICS_PORT THEN metrics are served on it, on this machine unless METRICS_HOST says otherwise', () => {
    expect(parseConfig({ DISCORD_TOKEN: TOKEN, METRICS_PORT: '9464' })).toMatchObject({ metricsPort: 9464, metricsHost: '127.0.0.1' });
    expect(parseConfig({ DISCORD_TOKEN: TOKEN, METRICS_PORT: '0', METRICS_HOST: '0.0.0.0' })).toMatchObject({ metricsPort: 0, metricsHost: '0.0.0.0' });
    expect(parseConfig({ DISCORD_TOKEN: TOKEN, METRICS_PORT: '', METRICS_HOST: '::' })).toMatchObject({ metricsPort: undefined, metricsHost: '::' });
  });

  it.each([
    [{ METRICS_PORT: '65536' }, 'Expected `METRICS_PORT` to be a port from 0 to 65535 (empty: off), got `65536`'],
    [{ METRICS_PORT: 'on' }, 'Expected `METRICS_PORT` to be a port from 0 to 65535 (empty: off), got `on`'],
    [{ METRICS_HOST: 'http://0.0.0.0:9464' }, 'Expected `METRICS_HOST` to be an address to listen on, such as 127.0.0.1 or 0.0.0.0, got `http://0.0.0.0:9464`'],
  ] as const)('GIVEN %o THEN the error names the metrics key and the value', (extra, expected) => {
    expect(errorOf({ DISCORD_TOKEN: TOKEN, ...extra })).toBe(expected);
  });

  it('GIVEN no JOB_RETENTION_DAYS THEN finished jobs are kept 30 days', () => {
    expect(parseConfig({ DISCORD_TOKEN: TOKEN }).jobRetentionDays).toBe(30);
  });

  it('GIVEN an empty optional key THEN the default is used (as .env.example leaves them)', () => {
    const config = parseConfig({ DISCORD_TOKEN: TOKEN, DISCORD_API_URL: '', SAMPLER_WORKERS: '', DATA_DIR: '' });
    expect(config.discordApiUrl).toBeUndefined();
    expect(config.engineWorkers).toBe(1);
    expect(config.dataDir).toBe('./data');
  });
});

describe('DISCORD_SHARDS and the shard processes', () => {
  const REDIS = 'redis://127.0.0.1:6379';

  it('GIVEN nothing THEN one shard in this process, named `bot`, not a shard process', () => {
    expect(parseConfig({ DISCORD_TOKEN: TOKEN })).toMatchObject({ shards: 1, shardProcess: false, botInstance: 'bot' });
  });

  it('GIVEN a number or auto with REDIS_URL THEN it is taken', () => {
    expect(parseConfig({ DISCORD_TOKEN: TOKEN, REDIS_URL: REDIS, DISCORD_SHARDS: '2' }).shards).toBe(2);
    expect(parseConfig({ DISCORD_TOKEN: TOKEN, REDIS_URL: REDIS, DISCORD_SHARDS: 'AUTO' }).shards).toBe('auto');
  });

  it('GIVEN DISCORD_SHARDS without REDIS_URL THEN one line says it needs REDIS_URL', () => {
    expect(errorOf({ DISCORD_TOKEN: TOKEN, DISCORD_SHARDS: '2' })).toMatch(/^`DISCORD_SHARDS` needs `REDIS_URL`/);
  });

  it('GIVEN a bad count THEN the error names DISCORD_SHARDS (not SHARDS, which discord.js sets)', () => {
    expect(errorOf({ DISCORD_TOKEN: TOKEN, REDIS_URL: REDIS, DISCORD_SHARDS: '0' })).toBe(
      'Expected `DISCORD_SHARDS` to be `auto` or a number of shards from 1 to 1000, got `0`',
    );
  });

  it('GIVEN the env discord.js ShardingManager gives a shard process THEN it is a shard process named shard-<id>, with its own metrics port', () => {
    const env = { DISCORD_TOKEN: TOKEN, REDIS_URL: REDIS, DISCORD_SHARDS: '2', SHARDING_MANAGER: 'true', SHARDS: '1', SHARD_COUNT: '2', METRICS_PORT: '9100' };
    expect(parseConfig(env)).toMatchObject({ shardProcess: true, botInstance: 'shard-1', metricsPort: 9101 });
    expect(parseConfig({ ...env, SHARDS: '0' }).metricsPort).toBe(9100);
    expect(parseConfig({ ...env, METRICS_PORT: '0' }).metricsPort).toBe(0);
    expect(errorOf({ ...env, METRICS_PORT: '65535' })).toMatch(/^`METRICS_PORT` \+ the shard id \(65535 \+ 1\) is above 65535/);
  });
});
