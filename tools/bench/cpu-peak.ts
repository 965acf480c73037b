/**
 * This CPU's theoretical fp32 peak: physical cores × FMA units per core × SIMD fp32 lanes × 2 (an FMA is a multiply
 * and an add) × clock. Cores, model, SIMD width and clock are read from the machine (/proc/cpuinfo, `os.cpus()`,
 * /sys/.../cpufreq); the number of FMA units per core is NOT readable from the machine: it is an assumption taken
 * from the vendors' microarchitecture documents (2 per core on AMD Zen and on Intel since Haswell).
 */
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';

export interface CpuPeak {
  model: string;
  vendor: string;
  /** Distinct (physical id, core id) pairs in /proc/cpuinfo; `os.cpus().length` when those fields are missing. */
  physicalCores: number;
  logicalCpus: number;
  /** The widest fp32 vector the flags allow: avx512f 16, avx2 + fma 8, else sse 4. */
  simdFlag: string;
  /** fp32 lanes per FMA unit per cycle, after the datapath note below. */
  lanes: number;
  /** Assumed, not read: see `fmaAssumption`. */
  fmaUnits: number;
  fmaAssumption: string;
  clockGhz: number;
  /** Where the clock came from. */
  clockSource: string;
  peakGflops: number;
  formula: string;
}

interface CpuinfoBlock {
  [field: string]: string;
}

function blocks(cpuinfo: string): CpuinfoBlock[] {
  return cpuinfo
    .split(/\n\s*\n/)
    .map((chunk) => {
      const block: CpuinfoBlock = {};
      for (const line of chunk.split('\n')) {
        const i = line.indexOf(':');
        if (i > 0) block[line.slice(0, i).trim()] = line.slice(i + 1).trim();
      }
      return block;
    })
    .filter((b) => b.processor !== undefined);
}

/**
 * Peak from a /proc/cpuinfo text. `maxFreqKhz`: /sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq when the
 * machine has it (a VM often does not), preferred over cpuinfo's current "cpu MHz".
 */
export function cpuPeakFrom(cpuinfo: string, maxFreqKhz?: number, fallback: { cpus: number; mhz: number } = { cpus: 1, mhz: NaN }): CpuPeak {
  const fallbackCpus = fallback.cpus;
  const list = blocks(cpuinfo);
  const first = list[0] ?? {};
  const flags = new Set((first.flags ?? '').split(/\s+/));
  const cores = new Set(list.filter((b) => b['core id'] !== undefined).map((b) => `${b['physical id'] ?? 0}:${b['core id']}`));
  const physicalCores = cores.size > 0 ? cores.size : list.length || fallbackCpus;
  const vendor = first.vendor_id ?? 'unknown';
  const family = Number(first['cpu family'] ?? NaN);

  let simdFlag = 'sse';
  let lanes = 4;
  if (flags.has('avx512f')) {
    simdFlag = 'avx512f';
    lanes = 16;
  } else if (flags.has('avx2') && flags.has('fma')) {
    simdFlag = 'avx2+fma';
    lanes = 8;
  }
  const fmaUnits = 2;
  let fmaAssumption = 'assumed, not read from the machine: 2 FMA units per core (AMD Zen, Intel since Haswell; vendors\' microarchitecture docs)';
  if (simdFlag === 'avx512f' && vendor === 'AuthenticAMD' && family === 25) {
    // Zen 4 (family 19h) runs a 512-bit op over its two 256-bit FMA pipes: 2 × 8 lanes per cycle, not 2 × 16.
    lanes = 8;
    fmaAssumption += '; AMD family 19h (Zen 4) splits AVX-512 over 256-bit pipes, so 8 lanes per unit';
  }

  let clockGhz: number;
  let clockSource: string;
  if (maxFreqKhz && maxFreqKhz > 0) {
    clockGhz = maxFreqKhz / 1e6;
    clockSource = 'cpufreq cpuinfo_max_freq';
  } else {
    const mhz = list.map((b) => Number(b['cpu MHz'])).filter((v) => Number.isFinite(v) && v > 0);
    if (mhz.length > 0) {
      clockGhz = Math.max(...mhz) / 1000;
      clockSource = '/proc/cpuinfo "cpu MHz" (the current clock; no cpufreq max here)';
    } else {
      clockGhz = fallback.mhz / 1000;
      clockSource = 'os.cpus() speed';
    }
  }
  const peakGflops = physicalCores * fmaUnits * lanes * 2 * clockGhz;
  return {
    model: first['model name'] ?? 'unknown',
    vendor,
    physicalCores,
    logicalCpus: list.length || fallbackCpus,
    simdFlag,
    lanes,
    fmaUnits,
    fmaAssumption,
    clockGhz,
    clockSource,
    peakGflops,
    formula: `${physicalCores} cores × ${fmaUnits} FMA units × ${lanes} fp32 lanes × 2 × ${clockGhz.toFixed(3)} GHz = ${peakGflops.toFixed(1)} GFLOP/s`,
  };
}

/** This machine's peak. */
export function cpuPeak(): CpuPeak {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  const maxFile = '/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq';
  const maxFreqKhz = existsSync(maxFile) ? Number(readFileSync(maxFile, 'utf8').trim()) : undefined;
  const cpus = os.cpus();
  const peak = cpuPeakFrom(cpuinfo, maxFreqKhz, { cpus: cpus.length, mhz: cpus[0]?.speed ?? NaN });
  if (peak.model === 'unknown') peak.model = cpus[0]?.model.trim() ?? 'unknown';
  return peak;
}
