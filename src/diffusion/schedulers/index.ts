import type { SchedulerName } from '../types.js';
import { DDIMScheduler } from './ddim.js';
import { DDPMScheduler } from './ddpm.js';
import { DPMSolverMultistepScheduler } from './dpm-solver-multistep.js';
import { EulerAncestralDiscreteScheduler } from './euler-ancestral-discrete.js';
import { EulerDiscreteScheduler } from './euler-discrete.js';
import { HeunDiscreteScheduler } from './heun-discrete.js';
import { LCMScheduler } from './lcm.js';
import { LMSDiscreteScheduler } from './lms-discrete.js';
import { PNDMScheduler } from './pndm.js';
import type { Scheduler, SchedulerConfig } from './types.js';

/**
 * Schedulers by name, each built from a scheduler_config.json with diffusers' key names and defaults.
 * A model's own scheduler is found from the config's `_class_name` with {@link schedulerNameFromClass}.
 */

const FACTORIES: Record<SchedulerName, (config: SchedulerConfig) => Scheduler> = {
  ddpm: (config) => new DDPMScheduler(config),
  ddim: (config) => new DDIMScheduler(config),
  pndm: (config) => new PNDMScheduler(config),
  euler: (config) => new EulerDiscreteScheduler(config),
  euler_a: (config) => new EulerAncestralDiscreteScheduler(config),
  heun: (config) => new HeunDiscreteScheduler(config),
  lms: (config) => new LMSDiscreteScheduler(config),
  dpmpp_2m: (config) => new DPMSolverMultistepScheduler(config),
  lcm: (config) => new LCMScheduler(config),
};

const CLASS_NAMES: Record<string, SchedulerName> = {
  DDPMScheduler: 'ddpm',
  DDIMScheduler: 'ddim',
  PNDMScheduler: 'pndm',
  EulerDiscreteScheduler: 'euler',
  EulerAncestralDiscreteScheduler: 'euler_a',
  HeunDiscreteScheduler: 'heun',
  LMSDiscreteScheduler: 'lms',
  DPMSolverMultistepScheduler: 'dpmpp_2m',
  LCMScheduler: 'lcm',
};

/**
 * Build the named scheduler from a model's scheduler_config.json (diffusers' keys; unknown keys, including another
 * scheduler's, are ignored, so any model's config can seed any scheduler). Throws an Error naming the key on a bad value.
 */
export function createScheduler(name: SchedulerName, config: SchedulerConfig): Scheduler {
  const factory = Object.hasOwn(FACTORIES, name) ? FACTORIES[name] : undefined;
  if (factory === undefined) {
    throw new Error(`Expected a scheduler name, one of ${Object.keys(FACTORIES).join(', ')}, got \`${String(name)}\``);
  }
  return factory(config);
}

/** The scheduler name for a diffusers `_class_name` (e.g. `PNDMScheduler` → `pndm`); undefined when we have none. */
export function schedulerNameFromClass(className: string): SchedulerName | undefined {
  return Object.hasOwn(CLASS_NAMES, className) ? CLASS_NAMES[className] : undefined;
}

export type { Scheduler, SchedulerConfig, StepResult, NoiseSource } from './types.js';
