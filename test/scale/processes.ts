/**
 * Real child processes for the scale-out tests (the compiled bot, worker and CLIs, or a fixture under tsx), with
 * their output kept, and everything they left ended and removed after each test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach } from 'vitest';

export interface Proc {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Registers the afterEach that SIGKILLs what is still running and runs the cleanups; call once per test file. */
export function processes(tempPrefix: string) {
  const procs: Proc[] = [];
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    for (const proc of procs.splice(0)) if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGKILL');
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** A temporary directory, removed after the test. */
  function tempDir(): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), tempPrefix));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  /** `node <args>` with only PATH, HOME and `env`, from `cwd` (default: a temp dir, so no developer .env is read). */
  function run(args: string[], env: Record<string, string>, cwd = tempDir()): Proc {
    const child = spawn(process.execPath, args, {
      cwd,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout!.on('data', (chunk) => (output += chunk));
    child.stderr!.on('data', (chunk) => (output += chunk));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const proc = { child, output: () => output, exited };
    procs.push(proc);
    return proc;
  }

  return { run, tempDir, cleanups };
}
