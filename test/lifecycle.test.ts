import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { guardProcess } from '../src/lifecycle.js';
import type { Logger } from '../src/log.js';

function fakeProcess() {
  const emitter = new EventEmitter();
  const exits: number[] = [];
  let exited!: (code: number) => void;
  const exitedOnce = new Promise<number>((resolve) => (exited = resolve));
  return {
    emitter,
    exits,
    exitedOnce,
    proc: {
      pid: 4242,
      kill: (pid: number, signal: string) => {
        exits.push(signal === 'SIGKILL' ? 137 : -1);
        exited(137);
        return pid;
      },
      once: (event: string, listener: (...args: any[]) => void) => emitter.once(event, listener),
      on: (event: string, listener: (...args: any[]) => void) => emitter.on(event, listener),
      exit: (code: number) => {
        exits.push(code);
        exited(code);
      },
    },
  };
}

function recordingLogger(lines: { level: string; message: string; context?: Record<string, unknown> }[]): Logger {
  const at = (level: string) => (message: string, context?: Record<string, unknown>) => lines.push({ level, message, context });
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

describe('how the process ends', () => {
  it('GIVEN SIGTERM and a stop that never finishes (a stuck engine) THEN the journal is closed and the process kills itself within the bound', async () => {
    const fake = fakeProcess();
    const lines: Parameters<typeof recordingLogger>[0] = [];
    let closed = 0;
    const guard = guardProcess({
      logger: recordingLogger(lines),
      stop: () => new Promise(() => {}),
      closeNow: () => closed++,
      shutdownTimeoutMs: 50,
      process: fake.proc as never,
    });
    guard.started();
    const started = Date.now();
    fake.emitter.emit('SIGTERM', 'SIGTERM');
    // 137: SIGKILL of itself, since Node's own exit would wait for the stuck native call.
    expect(await fake.exitedOnce).toBe(137);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(closed).toBe(1);
    expect(lines.some((l) => l.level === 'error' && /took too long/.test(l.message))).toBe(true);
  });

  it('GIVEN SIGINT and a clean stop THEN exit 0 once, a second signal ignored', async () => {
    const fake = fakeProcess();
    let stops = 0;
    const guard = guardProcess({
      logger: recordingLogger([]),
      stop: async () => void stops++,
      closeNow: () => {},
      process: fake.proc as never,
    });
    guard.started();
    fake.emitter.emit('SIGINT', 'SIGINT');
    fake.emitter.emit('SIGTERM', 'SIGTERM');
    expect(await fake.exitedOnce).toBe(0);
    expect(stops).toBe(1);
    expect(fake.exits).toEqual([0]);
  });

  it('GIVEN a process forked with IPC (a gateway shard) WHEN its parent disconnects THEN it stops gracefully and exits 0', async () => {
    const fake = fakeProcess();
    const lines: Parameters<typeof recordingLogger>[0] = [];
    let stops = 0;
    const guard = guardProcess({
      logger: recordingLogger(lines),
      stop: async () => void stops++,
      closeNow: () => {},
      process: { ...fake.proc, connected: true } as never,
    });
    guard.started();
    fake.emitter.emit('disconnect');
    expect(await fake.exitedOnce).toBe(0);
    expect(stops).toBe(1);
    expect(lines.some((l) => l.level === 'warn' && /parent process is gone/.test(l.message))).toBe(true);
  });

  it('GIVEN a process without an IPC channel THEN a disconnect event is not a reason to stop', async () => {
    const fake = fakeProcess();
    let stops = 0;
    guardProcess({ logger: recordingLogger([]), stop: async () => void stops++, closeNow: () => {}, process: fake.proc as never }).started();
    fake.emitter.emit('disconnect');
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(stops).toBe(0);
    expect(fake.exits).toEqual([]);
  });

  it('GIVEN a signal during start-up THEN the stop runs once the app has started', async () => {
    const fake = fakeProcess();
    let stops = 0;
    const guard = guardProcess({ logger: recordingLogger([]), stop: async () => void stops++, closeNow: () => {}, process: fake.proc as never });
    fake.emitter.emit('SIGTERM', 'SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(stops).toBe(0);
    guard.started();
    expect(await fake.exitedOnce).toBe(0);
    expect(stops).toBe(1);
  });

  it('GIVEN an uncaught exception THEN it is logged with its message and stack, the journal closed, and the exit code is 1', async () => {
    const fake = fakeProcess();
    const lines: Parameters<typeof recordingLogger>[0] = [];
    let closed = 0;
    guardProcess({ logger: recordingLogger(lines), stop: async () => {}, closeNow: () => closed++, process: fake.proc as never });
    const error = new Error('worker reply for an unknown id');
    fake.emitter.emit('uncaughtException', error);
    expect(await fake.exitedOnce).toBe(1);
    expect(closed).toBe(1);
    const line = lines.find((l) => l.level === 'error')!;
    expect(line.message).toMatch(/uncaught exception/);
    expect(line.context?.error).toBe(error);
  });

  it('GIVEN an unhandled rejection THEN it is logged and the bot goes on', () => {
    const fake = fakeProcess();
    const lines: Parameters<typeof recordingLogger>[0] = [];
    guardProcess({ logger: recordingLogger(lines), stop: async () => {}, closeNow: () => {}, process: fake.proc as never });
    fake.emitter.emit('unhandledRejection', new Error('REST 500'));
    expect(fake.exits).toEqual([]);
    expect(lines[0]).toMatchObject({ level: 'error', message: 'unhandled rejection' });
  });
});
