/**
 * A real Debian `redis-server` for a test file or the bench (tests import it from tools/, never the reverse): a free loopback port, a temporary directory, AOF when asked,
 * stopped (and restartable on the same port and data, to test a Redis restart) by the test. No Redis mock.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** True when `redis-server` is on the PATH (.ci/run installs it; without it these tests are skipped with a warning). */
export const HAVE_REDIS = spawnSync('redis-server', ['--version']).status === 0;
if (!HAVE_REDIS) console.warn('redis-server is not installed (apt-get install redis-server): the scale-out tests are skipped');

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export class RedisServer {
  private child?: ChildProcess;
  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly appendOnly: boolean,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(options: { appendOnly?: boolean } = {}): Promise<RedisServer> {
    const dir = mkdtempSync(path.join(tmpdir(), 'imagine-redis-'));
    const server = new RedisServer(await freePort(), dir, options.appendOnly ?? false);
    await server.run();
    return server;
  }

  /** Start (again) on the same port and directory: with AOF on, what was written before is back. */
  async run(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '', '--protected-mode', 'yes'];
    args.push('--appendonly', this.appendOnly ? 'yes' : 'no');
    if (this.appendOnly) args.push('--appendfsync', 'always');
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 20_000);
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited with ${code}: ${out}`));
      });
    });
  }

  /** Stop the server (SIGTERM: with AOF on it has fsynced every write already). */
  async stop(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
    this.child = undefined;
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
