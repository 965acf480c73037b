/**
 * How the process ends: a signal stops the bot gracefully within a stated time, stuck engine or not; an uncaught
 * exception is logged, the journal closed, and the process exits non-zero so a supervisor (systemd, Docker, pm2)
 * starts it again. Whatever was running is `running` in the journal and runs again once on the next start.
 * A process forked with an IPC channel (a gateway shard of the ShardingManager) stops the same graceful way when
 * that channel closes: its parent is gone (SIGKILLed, crashed), nobody will ever signal it, and a leftover shard
 * would hold a second gateway session once a new manager starts.
 */
import type { Logger } from './log.js';

/** Longest a graceful stop may take before the process exits anyway. */
export const SHUTDOWN_TIMEOUT_MS = 20_000;

/** The parts of `process` this module uses (tests pass a stand-in). */
export interface ProcessLike {
  readonly pid: number;
  /** True while an IPC channel to the parent is open (Node sets it only in a process forked with one). */
  readonly connected?: boolean;
  once(event: 'SIGTERM' | 'SIGINT', listener: (signal: NodeJS.Signals) => void): unknown;
  once(event: 'disconnect', listener: () => void): unknown;
  on(event: 'uncaughtException' | 'unhandledRejection', listener: (error: unknown) => void): unknown;
  exit(code: number): void;
  kill(pid: number, signal: NodeJS.Signals): unknown;
}

export interface LifecycleOptions {
  logger: Logger;
  /** Graceful stop: stop taking work, put running jobs back, close everything. */
  stop: () => Promise<unknown>;
  /** Last-resort cleanup after a fatal error (close the journal); must not throw, must not wait. */
  closeNow: () => void;
  /** Default SHUTDOWN_TIMEOUT_MS. */
  shutdownTimeoutMs?: number;
  process?: ProcessLike;
}

/**
 * Resolves true when `stop` finished within `timeoutMs`, false when the time ran out (or it threw).
 */
export async function stopWithin(stop: () => Promise<unknown>, timeoutMs: number, logger: Logger): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
    timer.unref();
  });
  try {
    return await Promise.race([
      stop().then(
        () => true,
        (error: unknown) => {
          logger.error('shutdown did not finish cleanly', { error });
          return false;
        },
      ),
      timedOut,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Installs the signal and fatal-error handlers. Returns `whenStarted`, to call once `stop` can work (a signal
 * that arrives during start-up is acted on then).
 */
export function guardProcess(options: LifecycleOptions): { started(): void } {
  const proc = options.process ?? process;
  const timeoutMs = options.shutdownTimeoutMs ?? SHUTDOWN_TIMEOUT_MS;
  const { logger } = options;
  let started = false;
  let signalled: NodeJS.Signals | 'disconnect' | undefined;
  let stopping = false;

  const shutDown = async () => {
    if (stopping) return;
    stopping = true;
    const clean = await stopWithin(options.stop, timeoutMs, logger);
    if (clean) {
      proc.exit(0);
      return;
    }
    logger.error('shutdown took too long; exiting with the running job left for the next start', { timeoutMs });
    options.closeNow();
    // Node's exit waits for a worker thread's native model call to return (and terminating that thread mid-call
    // aborts the process once the call returns): a stuck call would hold the exit for as long as it runs. The
    // journal is closed, so the only bounded way out is the kernel's.
    proc.kill(proc.pid, 'SIGKILL');
  };
  const onSignal = (signal: NodeJS.Signals | 'disconnect') => {
    if (signalled) return;
    signalled = signal;
    if (signal === 'disconnect') logger.warn('the parent process is gone (its IPC channel closed); shutting down');
    else logger.info('shutting down', { signal });
    if (started) void shutDown();
  };
  proc.once('SIGTERM', onSignal);
  proc.once('SIGINT', onSignal);
  if (proc.connected === true) proc.once('disconnect', () => onSignal('disconnect'));

  const fatal = (kind: string) => (error: unknown) => {
    logger.error(`${kind}; exiting so a supervisor can restart the bot`, { error });
    options.closeNow();
    proc.exit(1);
  };
  proc.on('uncaughtException', fatal('uncaught exception'));
  // A stray rejected promise (a REST call nobody awaited) is logged, not fatal: the state it leaves is local.
  proc.on('unhandledRejection', (error) => logger.error('unhandled rejection', { error }));

  return {
    started() {
      started = true;
      if (signalled) void shutDown();
    },
  };
}
