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

describe('scoreImage, relations (64×64, as the v2 model draws)', () => {
  const redCircleLeftOfBlueSquare: Expectation = {
    background: 'white',
    count: 2,
    objects: [
      { color: 'red', shape: 'circle', position: null },
      { color: 'blue', shape: 'square', position: null },
    ],
    relation: 'left',
  };
  const pair = (red: [number, number], blue: [number, number], blueShape: 'square' | 'triangle' = 'square') =>
    drawScene({
      width: 64,
      height: 64,
      background: 'white',
      objects: [
        { color: 'red', shape: 'circle', cx: red[0], cy: red[1], diameter: 20 },
        { color: 'blue', shape: blueShape, cx: blue[0], cy: blue[1], diameter: 20 },
      ],
    });

  it('GIVEN the red circle left of the blue square, a little higher THEN the relation holds', async () => {
    expect(scoreImage(await viaPng(pair([16, 28], [48, 34])), redCircleLeftOfBlueSquare)).toEqual({ background: true, relation: true });
  });

  it('GIVEN them the other way round THEN it fails', () => {
    expect(scoreImage(pair([48, 32], [16, 32]), redCircleLeftOfBlueSquare).relation).toBe(false);
  });

  it('GIVEN the red circle further above the square than left of it THEN "left of" fails and "above" holds', () => {
    const img = pair([26, 14], [34, 48]);
    expect(scoreImage(img, redCircleLeftOfBlueSquare).relation).toBe(false);
    expect(scoreImage(img, { ...redCircleLeftOfBlueSquare, relation: 'above' }).relation).toBe(true);
    expect(scoreImage(img, { ...redCircleLeftOfBlueSquare, relation: 'below' }).relation).toBe(false);
  });

  it('GIVEN the right places but the blue object a triangle THEN it fails', () => {
    expect(scoreImage(pair([16, 32], [48, 32], 'triangle'), redCircleLeftOfBlueSquare).relation).toBe(false);
  });

  it('GIVEN a third object THEN it fails (the prompt asked for two)', () => {
    const img = drawScene({
      width: 64,
      height: 64,
      background: 'white',
      objects: [
        { color: 'red', shape: 'circle', cx: 14, cy: 32, diameter: 18 },
        { color: 'blue', shape: 'square', cx: 50, cy: 32, diameter: 18 },
        { color: 'green', shape: 'circle', cx: 32, cy: 10, diameter: 14 },
      ],
    });
    expect(scoreImage(img, redCircleLeftOfBlueSquare).relation).toBe(false);
  });
});

describe('scoreImage, counts', () => {
  const green = (centres: [number, number][], other?: [number, number]) =>
    drawScene({
      width: 64,
      height: 64,
      background: 'black',
      objects: [
        ...centres.map(([cx, cy]) => ({ color: 'green' as const, shape: 'triangle' as const, cx, cy, diameter: 18 })),
        ...(other ? [{ color: 'yellow' as const, shape: 'triangle' as const, cx: other[0], cy: other[1], diameter: 18 }] : []),
      ],
    });
  const want = (count: number): Expectation => ({
    background: 'black',
    count,
    objects: [{ color: 'green', shape: 'triangle', position: null }],
    counted: true,
  });
  const three: [number, number][] = [
    [14, 16],
    [48, 20],
    [30, 48],
  ];

  it('GIVEN one, two and three green triangles THEN each count holds for its own number only', async () => {
    for (const n of [1, 2, 3]) {
      const img = await viaPng(green(three.slice(0, n)));
      for (const asked of [1, 2, 3]) {
        expect(scoreImage(img, want(asked)), `${n} drawn, ${asked} asked`).toEqual({ background: true, number: n === asked });
      }
    }
  });

  it('GIVEN two green triangles and a yellow one THEN "three green triangles" fails', () => {
    expect(scoreImage(green(three.slice(0, 2), three[2]), want(3)).number).toBe(false);
  });

  it('GIVEN two triangles touching THEN they are one object, and "two" fails', () => {
    expect(scoreImage(green([[24, 32], [38, 32]]), want(2)).number).toBe(false);
  });
});
