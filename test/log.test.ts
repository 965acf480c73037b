import { DiscordAPIError } from 'discord.js';
import { describe, expect, it } from 'vitest';
import { createLogger, redactPath } from '../src/log.js';

function capture(level: 'info' | 'debug' = 'info') {
  const lines: string[] = [];
  const logger = createLogger({ level, destination: (line) => lines.push(line) });
  return { logger, lines, parsed: () => lines.map((line) => JSON.parse(line) as Record<string, any>) };
}

describe('the logger', () => {
  it('GIVEN a plain Error THEN its name, message and stack are logged (not `{}`)', () => {
    const { logger, parsed } = capture();
    logger.error('worker crashed', { jobId: 'j1', error: new Error('boom') });
    const [line] = parsed();
    expect(line).toMatchObject({ level: 50, msg: 'worker crashed', jobId: 'j1', error: { name: 'Error', message: 'boom' } });
    expect(line!.error.stack).toMatch(/^Error: boom\n\s+at /);
  });

  it('GIVEN a DiscordAPIError from a webhook call with a 3 MB upload THEN the token is redacted and no request body is logged', () => {
    const { logger, lines, parsed } = capture();
    const error = new DiscordAPIError(
      { code: 50035, message: 'Invalid Form Body' },
      50035,
      400,
      'PATCH',
      'https://discord.com/api/v10/webhooks/111/SECRET-INTERACTION-TOKEN/messages/@original',
      { files: [{ name: 'imagine-1.png', data: Buffer.alloc(3_000_000, 7) }], body: { content: 'hello' } },
    );
    logger.warn('delivery failed', { jobId: 'j2', error });
    expect(lines[0]!.length).toBeLessThan(5_000);
    expect(lines[0]).not.toContain('SECRET-INTERACTION-TOKEN');
    expect(lines[0]).not.toContain('requestBody');
    expect(parsed()[0]!.error).toMatchObject({
      name: 'DiscordAPIError[50035]',
      message: 'Invalid Form Body',
      code: 50035,
      status: 400,
      method: 'PATCH',
      path: '/api/v10/webhooks/111/[redacted]/messages/@original',
    });
  });

  it('GIVEN secrets and bytes anywhere in the context THEN they are never written', () => {
    const { logger, lines } = capture();
    logger.info('odd context', {
      interaction: { applicationId: 'a', token: 'TOKEN-IN-CONTEXT' },
      url: 'https://discord.com/api/v10/interactions/123/TOKEN-IN-PATH/callback?token=QUERY-TOKEN',
      png: new Uint8Array(1_000_000),
      proxy: 'http://admin:hunter2@proxy.local/api',
      cause: new Error('outer', { cause: new Error('inner') }),
    });
    const [line] = lines;
    for (const secret of ['TOKEN-IN-CONTEXT', 'TOKEN-IN-PATH', 'QUERY-TOKEN', 'hunter2']) expect(line).not.toContain(secret);
    expect(line).toContain('[1000000 bytes]');
    expect(line).toContain('"message":"inner"');
  });

  it('GIVEN LOG_LEVEL warn THEN info lines are not written; debug shows them all', () => {
    const lines: string[] = [];
    const quiet = createLogger({ level: 'warn', destination: (line) => lines.push(line) });
    quiet.info('hidden');
    quiet.warn('shown');
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['shown']);
  });

  it.each([
    ['/webhooks/1/abc/messages/@original', '/webhooks/1/[redacted]/messages/@original'],
    ['/interactions/99/tok/callback', '/interactions/99/[redacted]/callback'],
    ['/channels/5/messages', '/channels/5/messages'],
  ])('GIVEN the path %s THEN redactPath gives %s', (input, expected) => {
    expect(redactPath(input)).toBe(expected);
  });
});
