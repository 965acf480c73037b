/**
 * Each bench section runs in a fresh node process (section-main.ts), so one model's load time and peak memory are
 * not mixed with another's, and a section that crashes is reported instead of ending the bench.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type SectionName = 'model' | 'levers' | 'bare-unet' | 'bot' | 'bot-process' | 'loop-levers' | 'fp16' | 'scale' | 'cached-startup';

const ENTRY = fileURLToPath(new URL(`./section-main${path.extname(fileURLToPath(import.meta.url))}`, import.meta.url));

/**
 * Run `section` with `input` in a child process and resolve with what it wrote. Its log lines go to this
 * process's stderr, prefixed. Rejects with the child's last lines if it fails or runs past `timeoutMs`.
 */
export function runSection<T>(section: SectionName, input: unknown, timeoutMs: number): Promise<T> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'imagine-bench-'));
  const inputFile = path.join(dir, 'input.json');
  const outputFile = path.join(dir, 'output.json');
  writeFileSync(inputFile, JSON.stringify(input));
  return new Promise<T>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ENTRY, section, inputFile, outputFile], {
      stdio: ['ignore', 'inherit', 'pipe'],
    });
    const tail: string[] = [];
    child.stderr.setEncoding('utf8');
    let partial = '';
    child.stderr.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        tail.push(line);
        if (tail.length > 20) tail.shift();
        process.stderr.write(`  [${section}] ${line}\n`);
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      try {
        if (code !== 0) {
          const why = signal === 'SIGKILL' ? `ran past ${Math.round(timeoutMs / 1000)} s` : `exited with ${code ?? signal}`;
          reject(new Error(`bench section \`${section}\` ${why}: ${tail.slice(-5).join(' | ')}`));
          return;
        }
        resolve(JSON.parse(readFileSync(outputFile, 'utf8')) as T);
      } catch (error) {
        reject(error as Error);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}
