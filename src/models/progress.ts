/**
 * The pull's progress line on stderr: bytes, total, speed and the file being fetched. On a terminal one line is
 * redrawn in place with a bar (at most every 100 ms); elsewhere (a log, CI) a plain line every 5 s.
 */

export interface PullProgress {
  /** Repository path of the file being fetched. */
  file: string;
  /** 1-based index of that file, and how many there are. */
  fileIndex: number;
  fileCount: number;
  /** Bytes in place so far (resumed ones included) and bytes in all. */
  bytesDone: number;
  bytesTotal: number;
  /** Bytes fetched over the network in this run, and the seconds since it started (for the speed). */
  bytesFetched: number;
  seconds: number;
}

export interface ProgressSink {
  write(text: string): unknown;
  isTTY?: boolean;
}

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB'];

/** Bytes in decimal units, as the Hub shows sizes: `1.23 GB`. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value >= 100 ? 0 : value >= 10 ? 1 : 2)} ${UNITS[unit]}`;
}

function describe(p: PullProgress): string {
  const speed = p.seconds > 0 ? p.bytesFetched / p.seconds : 0;
  return `${formatBytes(p.bytesDone)} / ${formatBytes(p.bytesTotal)}  ${formatBytes(speed)}/s  [${p.fileIndex}/${p.fileCount}] ${p.file}`;
}

/**
 * A progress callback that writes to `sink` no more often than its pace; `done()` writes the last state and, on a
 * terminal, ends the line.
 */
export function progressReporter(sink: ProgressSink, now: () => number = () => performance.now()) {
  const tty = sink.isTTY === true;
  const everyMs = tty ? 100 : 5000;
  let last = -Infinity;
  let latest: PullProgress | undefined;
  const draw = (p: PullProgress) => {
    if (tty) {
      const width = 24;
      const filled = p.bytesTotal > 0 ? Math.round((p.bytesDone / p.bytesTotal) * width) : width;
      const percent = p.bytesTotal > 0 ? Math.floor((p.bytesDone / p.bytesTotal) * 100) : 100;
      sink.write(`\r\x1b[2K[${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${String(percent).padStart(3)}%  ${describe(p)}`);
    } else {
      sink.write(`${describe(p)}\n`);
    }
  };
  return {
    update(p: PullProgress): void {
      latest = p;
      const t = now();
      if (t - last < everyMs) return;
      last = t;
      draw(p);
    },
    done(): void {
      if (latest) draw(latest);
      if (tty && latest) sink.write('\n');
    },
  };
}
