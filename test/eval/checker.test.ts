import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { describeImage, scoreImage, SHAPES, type Expectation, type RgbImage } from '../../src/eval/checker.js';
import { COLOR_NAMES, nearestColor, NAMED_COLORS } from '../../src/eval/colors.js';
import { drawScene, type DrawnScene } from '../../src/eval/draw.js';

/** Through real PNG bytes and back, as generated images reach the checker. */
async function viaPng(image: RgbImage): Promise<RgbImage> {
  const png = await sharp(Buffer.from(image.rgb), { raw: { width: image.width, height: image.height, channels: 3 } })
    .png()
    .toBuffer();
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, rgb: new Uint8Array(data) };
}

const POS = { left: [8, 16], right: [24, 16], top: [16, 8], bottom: [16, 24], center: [16, 16] } as const;

describe('nearestColor', () => {
  it('GIVEN each palette colour, slightly off THEN its own name comes back', () => {
    for (const name of COLOR_NAMES) {
      const [r, g, b] = NAMED_COLORS[name];
      expect(nearestColor([r + 12, g - 12, b + 8].map((v) => Math.min(255, Math.max(0, v))))).toBe(name);
    }
  });
});

describe('describeImage', () => {
  it('GIVEN every colour pair, shape and position, one object THEN all attributes are read back', async () => {
    let cases = 0;
    for (const background of COLOR_NAMES) {
      for (const color of COLOR_NAMES) {
        if (color === background) continue;
        for (const shape of SHAPES) {
          for (const [position, [cx, cy]] of Object.entries(POS)) {
            const diameter = position === 'center' ? 16 : 10;
            const scene: DrawnScene = { width: 32, height: 32, background, objects: [{ color, shape, cx, cy, diameter }] };
            const seen = describeImage(await viaPng(drawScene(scene)));
            expect(seen, `${color} ${shape} ${position} on ${background}`).toMatchObject({ background, count: 1 });
            expect(seen.objects[0], `${color} ${shape} ${position} on ${background}`).toMatchObject({ color, shape, position });
            cases++;
          }
        }
      }
    }
    expect(cases).toBe(8 * 7 * 3 * 5);
  });

  it('GIVEN two objects THEN both are found with their own colour, shape and side', async () => {
    const scene: DrawnScene = {
      width: 32,
      height: 32,
      background: 'white',
      objects: [
        { color: 'red', shape: 'circle', cx: 8, cy: 16, diameter: 11 },
        { color: 'blue', shape: 'square', cx: 24, cy: 16, diameter: 11 },
      ],
    };
    const seen = describeImage(await viaPng(drawScene(scene)));
    expect(seen.count).toBe(2);
    const byColor = Object.fromEntries(seen.objects.map((o) => [o.color, o]));
    expect(byColor.red).toMatchObject({ shape: 'circle', position: 'left' });
    expect(byColor.blue).toMatchObject({ shape: 'square', position: 'right' });
  });

  it('GIVEN a picture upscaled to 256×256 THEN it reads the same as at 32×32', async () => {
    const small = drawScene({ width: 32, height: 32, background: 'black', objects: [{ color: 'yellow', shape: 'triangle', cx: 16, cy: 8, diameter: 10 }] });
    const { data } = await sharp(Buffer.from(small.rgb), { raw: { width: 32, height: 32, channels: 3 } })
      .resize(256, 256, { kernel: 'nearest' })
      .raw()
      .toBuffer({ resolveWithObject: true });
    const big = describeImage({ width: 256, height: 256, rgb: new Uint8Array(data) });
    expect(big).toMatchObject({ background: 'black', count: 1 });
    expect(big.objects[0]).toMatchObject({ color: 'yellow', shape: 'triangle', position: 'top' });
  });

  it('GIVEN a flat picture THEN it has no objects', () => {
    const seen = describeImage(drawScene({ width: 32, height: 32, background: 'green', objects: [] }));
    expect(seen).toEqual({ background: 'green', objects: [], count: 0 });
  });

  it('GIVEN a buffer of the wrong length THEN it says what it expected', () => {
    expect(() => describeImage({ width: 32, height: 32, rgb: new Uint8Array(10) })).toThrow('Expected 3072 RGB bytes for 32×32, got 10');
  });
});

describe('scoreImage', () => {
  const redCircleLeftOnWhite: Expectation = {
    background: 'white',
    count: 1,
    objects: [{ color: 'red', shape: 'circle', position: 'left' }],
  };

  it('GIVEN the picture the prompt asked for THEN every attribute passes', () => {
    const img = drawScene({ width: 32, height: 32, background: 'white', objects: [{ color: 'red', shape: 'circle', cx: 8, cy: 16, diameter: 10 }] });
    expect(scoreImage(img, redCircleLeftOnWhite)).toEqual({ background: true, color: true, shape: true, position: true });
  });

  it('GIVEN a wrong shape on the wrong side THEN exactly those attributes fail', () => {
    const img = drawScene({ width: 32, height: 32, background: 'white', objects: [{ color: 'red', shape: 'square', cx: 24, cy: 16, diameter: 10 }] });
    expect(scoreImage(img, redCircleLeftOnWhite)).toEqual({ background: true, color: true, shape: false, position: false });
  });

  it('GIVEN a two-object prompt and one object drawn THEN count and colour fail', () => {
    const img = drawScene({ width: 32, height: 32, background: 'white', objects: [{ color: 'red', shape: 'circle', cx: 8, cy: 16, diameter: 10 }] });
    const want: Expectation = {
      background: 'white',
      count: 2,
      objects: [
        { color: 'red', shape: 'circle', position: 'left' },
        { color: 'blue', shape: 'square', position: 'right' },
      ],
    };
    expect(scoreImage(img, want)).toMatchObject({ background: true, count: false, color: false, position: false });
  });

  it('GIVEN a prompt that leaves position and background open THEN they are not scored', () => {
    const img = drawScene({ width: 32, height: 32, background: 'purple', objects: [{ color: 'orange', shape: 'triangle', cx: 16, cy: 24, diameter: 16 }] });
    const want: Expectation = { background: null, count: 1, objects: [{ color: 'orange', shape: 'triangle', position: null }] };
    expect(scoreImage(img, want)).toEqual({ color: true, shape: true });
  });
});
