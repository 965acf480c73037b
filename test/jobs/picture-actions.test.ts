import { describe, expect, it } from 'vitest';
import { BUTTON_LIMITS, parsePictureButton, pictureButtonId, pictureButtonLabel } from '../../src/jobs/picture-actions.js';
import { pictureButtonRows } from '../../src/delivery/picture-buttons.js';

const JOB = '01JD5Q4W3X8Y9Z0ABCDE';

describe('U/V button custom ids', () => {
  it('GIVEN each action and picture THEN the id round-trips and is labelled 1-based', () => {
    for (const action of ['upscale', 'variation'] as const) {
      for (const picture of [0, 1, 2, 3]) {
        const id = pictureButtonId({ action, jobId: JOB, picture });
        expect(parsePictureButton(id)).toEqual({ action, jobId: JOB, picture });
      }
    }
    expect(pictureButtonId({ action: 'variation', jobId: JOB, picture: 2 })).toBe(`imagine:v:${JOB}:2`);
    expect(pictureButtonLabel({ action: 'upscale', picture: 0 })).toBe('U1');
  });

  it('GIVEN the longest job id the scheme takes (40) and picture 99 THEN the id is within Discord’s 100 characters', () => {
    expect(pictureButtonId({ action: 'upscale', jobId: 'Z'.repeat(40), picture: 99 }).length).toBeLessThanOrEqual(BUTTON_LIMITS.customIdLength);
  });

  it.each(['', 'imagine:x:ABC:1', `imagine:u:${JOB}`, `imagine:u:${JOB}:-1`, `imagine:u:${JOB}:100`, `imagine:u:../x:1`, `other:u:${JOB}:1`])(
    'GIVEN `%s` THEN it is not one of ours',
    (customId) => expect(parsePictureButton(customId)).toBeUndefined(),
  );

  it('GIVEN a job id with other characters THEN no id is made', () => {
    expect(() => pictureButtonId({ action: 'upscale', jobId: 'a:b', picture: 0 })).toThrow(/letters and digits/);
  });
});

describe('U/V button rows', () => {
  const labels = (pictures: number) => pictureButtonRows(JOB, pictures).map((row) => row.components.map((b) => ('label' in b ? b.label : '')));

  it('GIVEN 4 pictures THEN a U row and a V row; GIVEN 1 THEN its U and V share a row', () => {
    expect(labels(1)).toEqual([['U1', 'V1']]);
    expect(labels(4)).toEqual([['U1', 'U2', 'U3', 'U4'], ['V1', 'V2', 'V3', 'V4']]);
  });

  it('GIVEN 7 pictures THEN rows of at most 5; GIVEN 13 THEN more than 5 rows is refused', () => {
    expect(labels(7).map((row) => row.length)).toEqual([5, 2, 5, 2]);
    expect(() => pictureButtonRows(JOB, 13)).toThrow(/at most 5 rows/);
  });
});
