/**
 * The eval's image counter on stderr. On a terminal one `done/total` is redrawn in place; elsewhere (a log file, CI,
 * a pipe) `\r` does not move back, and 192 redraws ran together as `1/1922/192…`, so a plain line every few images
 * is written instead.
 */

/** Where the counter goes: process.stderr, or a stand-in in tests. */
export interface CounterSink {
  write(text: string): unknown;
  isTTY?: boolean;
}

/** Images between two lines when stderr is not a terminal. */
export const EVAL_PROGRESS_EVERY = 24;

/**
 * An `onItem` callback for runEval writing to `sink`: on a terminal a `\r` counter ended by a newline at the last
 * image; elsewhere a line at every `every`-th image and at the last.
 */
export function evalProgress(sink: CounterSink, every = EVAL_PROGRESS_EVERY): (done: number, total: number) => void {
  if (!Number.isInteger(every) || every < 1) throw new Error(`Expected \`every\` to be an integer of at least 1, got \`${every}\``);
  const tty = sink.isTTY === true;
  return (done, total) => {
    if (tty) sink.write(`\r${done}/${total}${done === total ? '\n' : ''}`);
    else if (done % every === 0 || done === total) sink.write(`${done}/${total} images\n`);
  };
}
