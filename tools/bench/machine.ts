/** What the numbers were measured on: written into tools/bench/results.json beside them. */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';

export interface MachineInfo {
  cpu: string;
  /** Logical cores node sees (os.availableParallelism). */
  cores: number;
  platform: string;
  memoryGb: number;
  node: string;
  onnxruntimeNode: string;
  /** 1-minute load average when the bench started: other work on the machine skews every timing. */
  loadAverage: number;
  date: string;
}

export function machineInfo(): MachineInfo {
  const require = createRequire(import.meta.url);
  let ortVersion = 'unknown';
  try {
    const pkg = JSON.parse(readFileSync(require.resolve('onnxruntime-node/package.json'), 'utf8')) as { version: string };
    ortVersion = pkg.version;
  } catch {
    // an unusual install layout: the version stays unknown rather than failing the bench
  }
  return {
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    cores: os.availableParallelism(),
    platform: `${process.platform}-${process.arch}`,
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    onnxruntimeNode: ortVersion,
    loadAverage: os.loadavg()[0],
    date: new Date().toISOString(),
  };
}
