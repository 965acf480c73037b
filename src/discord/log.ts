/** One line per event on stderr: time, level, message, then the context as JSON (job ids, commands). */
import type { Logger } from '../delivery/job-messenger.js';

export function createLogger(write: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): Logger {
  const log = (level: string) => (message: string, context?: Record<string, unknown>) => {
    const tail = context && Object.keys(context).length > 0 ? ` ${JSON.stringify(context)}` : '';
    write(`${new Date().toISOString()} ${level} ${message}${tail}`);
  };
  return { info: log('INFO'), warn: log('WARN'), error: log('ERROR') };
}
