import { describe, expect, it } from 'vitest';
import { evalProgress } from '../../src/eval/progress.js';

function sink(isTTY: boolean) {
  const written: string[] = [];
  return { written, isTTY, write: (text: string) => written.push(text) };
}

describe('the eval image counter', () => {
  it('GIVEN stderr is not a terminal THEN one whole line every N images and one at the last, never a carriage return', () => {
    const out = sink(false);
    const onItem = evalProgress(out, 4);
    for (let done = 1; done <= 10; done++) onItem(done, 10);
    expect(out.written).toEqual(['4/10 images\n', '8/10 images\n', '10/10 images\n']);
  });

  it('GIVEN stderr is a terminal THEN the counter is redrawn in place and the line ends at the last image', () => {
    const out = sink(true);
    const onItem = evalProgress(out, 4);
    for (let done = 1; done <= 3; done++) onItem(done, 3);
    expect(out.written).toEqual(['\r1/3', '\r2/3', '\r3/3\n']);
  });

  it('GIVEN an interval below 1 THEN it is refused', () => {
    expect(() => evalProgress(sink(false), 0)).toThrow('Expected `every` to be an integer of at least 1, got `0`');
  });
});
