import type { SchedulerConfig } from './types.js';

/**
 * Typed reads from a scheduler_config.json, with diffusers' key names. A missing key or a JSON `null` takes the
 * default (diffusers writes `null` for "not set", e.g. `"trained_betas": null`); unknown keys are ignored; a value
 * of the wrong kind is an Error naming the key, never silently fixed.
 */
export class ConfigReader {
  constructor(
    private readonly config: SchedulerConfig,
    /** Named in error messages, e.g. `EulerDiscreteScheduler`. */
    private readonly owner: string,
  ) {
    if (typeof config !== 'object' || config === null || Array.isArray(config)) {
      throw new TypeError(`Expected the ${owner} config to be a JSON object, got \`${describe(config)}\``);
    }
  }

  private raw(key: string): unknown {
    const value = this.config[key];
    return value === null ? undefined : value;
  }

  private fail(key: string, expected: string, value: unknown): never {
    throw new Error(`Expected \`${key}\` in the ${this.owner} config to be ${expected}, got \`${describe(value)}\``);
  }

  /** A finite number; `check` narrows it further (its text completes "to be …"). */
  number(key: string, fallback: number, check?: { test: (n: number) => boolean; expected: string }): number {
    const value = this.raw(key);
    if (value === undefined) return fallback;
    const expected = check?.expected ?? 'a finite number';
    if (typeof value !== 'number' || !Number.isFinite(value)) this.fail(key, expected, value);
    if (check && !check.test(value)) this.fail(key, expected, value);
    return value;
  }

  /**
   * A number that may be infinite. Python's json writes float('-inf') as `-Infinity`, which JSON.parse refuses, so
   * configs that went through another tool carry it as a string: "-inf", "-Infinity" (and the positive forms).
   */
  extendedNumber(key: string, fallback: number): number {
    const value = this.raw(key);
    if (value === undefined) return fallback;
    if (typeof value === 'number' && !Number.isNaN(value)) return value;
    if (typeof value === 'string') {
      const text = value.trim().toLowerCase();
      if (text === '-inf' || text === '-infinity') return -Infinity;
      if (text === 'inf' || text === 'infinity' || text === '+inf' || text === '+infinity') return Infinity;
    }
    this.fail(key, 'a number, or "-inf" / "inf"', value);
  }

  optionalNumber(key: string, check?: { test: (n: number) => boolean; expected: string }): number | undefined {
    return this.raw(key) === undefined ? undefined : this.number(key, 0, check);
  }

  integer(key: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    return this.number(key, fallback, {
      test: (n) => Number.isInteger(n) && n >= min && n <= max,
      expected: max === Number.MAX_SAFE_INTEGER ? `an integer ≥ ${min}` : `an integer from ${min} to ${max}`,
    });
  }

  boolean(key: string, fallback: boolean): boolean {
    const value = this.raw(key);
    if (value === undefined) return fallback;
    if (typeof value !== 'boolean') this.fail(key, 'true or false', value);
    return value;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], fallback: T): T {
    const value = this.raw(key);
    if (value === undefined) return fallback;
    if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
      this.fail(key, `one of ${allowed.map((a) => `\`${a}\``).join(', ')}`, value);
    }
    return value as T;
  }

  optionalNumberArray(key: string): number[] | undefined {
    const value = this.raw(key);
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || value.length === 0 || !value.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      this.fail(key, 'a non-empty array of finite numbers', value);
    }
    return value as number[];
  }

  /** Refuse a key whose value asks for something this port does not do, rather than ignore it. */
  refuseIf(key: string, unsupported: boolean, why: string): void {
    if (unsupported) {
      throw new Error(`\`${key}\` = \`${describe(this.config[key])}\` in the ${this.owner} config is not supported: ${why}`);
    }
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return value;
  try {
    const text = JSON.stringify(value);
    if (text === undefined) return String(value);
    return text.length > 60 ? `${text.slice(0, 57)}...` : text;
  } catch {
    return String(value);
  }
}
