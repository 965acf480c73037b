import { describe, expect, it } from 'vitest';
import { renderFinal, renderStage } from '../../src/delivery/render.js';
import { DISCORD_LIMITS, clip, echo, fitLines, fitList } from '../../src/delivery/text.js';

const result = {
  width: 64,
  height: 64,
  seed: 1,
  steps: 2,
  guidanceScale: 7.5,
  scheduler: 'ddim',
  model: 'm',
  truncated: false,
  timings: { totalMs: 1000 },
} as const;
const image = { name: 'imagine-1.png', data: new Uint8Array([1]) };

describe('member text echoed by the bot', () => {
  const prompt = '[Free Nitro](https://evil.example) **now** ||spoiler|| `code` # heading';

  it('GIVEN a prompt with a masked link and Markdown THEN the quote and the embed show it literally', () => {
    const staged = renderStage({ kind: 'queued', place: 1 }, { prompt });
    expect(staged.content).toContain('\\[Free Nitro](https://evil.example)');
    expect(staged.content).not.toMatch(/(?<!\\)\[Free Nitro\]\(/);
    expect(staged.content).toContain('\\*\\*now\\*\\*');
    const final = renderFinal({ params: { prompt, negativePrompt: '~~x~~', steps: 2, seed: 1, guidanceScale: 7.5 }, result: result as never, image, jobId: 'j' });
    const embed = final.embeds[0]!;
    expect(embed.description).toContain('\\[Free Nitro](https://evil.example)');
    expect(embed.description).toContain('\\|\\|spoiler\\|\\|');
    expect(embed.fields!.find((f) => f.name === 'Negative')!.value).toBe('\\~\\~x\\~\\~');
  });

  it('GIVEN the longest prompt made of Markdown characters THEN the embed stays within Discord’s limits', () => {
    const long = '*_'.repeat(500);
    const final = renderFinal({ params: { prompt: long, negativePrompt: long, steps: 2, seed: 1, guidanceScale: 7.5 }, result: result as never, image, jobId: 'j' });
    const embed = final.embeds[0]!;
    expect(embed.description!.length).toBeLessThanOrEqual(DISCORD_LIMITS.embedDescription);
    for (const field of embed.fields!) expect(field.value.length).toBeLessThanOrEqual(DISCORD_LIMITS.embedFieldValue);
    const total = embed.description!.length + embed.fields!.reduce((n, f) => n + f.name.length + f.value.length, 0) + embed.footer!.text.length;
    expect(total).toBeLessThanOrEqual(DISCORD_LIMITS.embedTotal);
    expect(renderStage({ kind: 'queued', place: 1 }, { prompt: long }).content.length).toBeLessThanOrEqual(DISCORD_LIMITS.content);
  });

  it('GIVEN plain text THEN echo leaves it unchanged', () => {
    expect(echo('a red circle, at dusk')).toBe('a red circle, at dusk');
  });
});

describe('fitting text into a message', () => {
  it('GIVEN lines that fit THEN they are joined unchanged, footer last', () => {
    expect(fitLines(['a', 'b'], { footer: 'end' })).toBe('a\nb\nend');
  });

  it('GIVEN more lines than fit THEN as many as fit and "… and N more", never over the limit', () => {
    const lines = Array.from({ length: 100 }, (_, i) => `line ${i} ${'x'.repeat(40)}`);
    const text = fitLines(lines, { max: 500, footer: 'totals' });
    expect(text.length).toBeLessThanOrEqual(500);
    const kept = text.split('\n').filter((l) => l.startsWith('line')).length;
    expect(text).toContain(`… and ${100 - kept} more\ntotals`);
    for (let max = 20; max < 600; max += 7) expect(fitLines(lines, { max }).length).toBeLessThanOrEqual(max);
  });

  it('GIVEN a list longer than the room THEN the items that fit and the count left out', () => {
    const items = Array.from({ length: 50 }, (_, i) => `\`word${i}\``);
    const text = fitList('Banned words: ', items, 100);
    expect(text.length).toBeLessThanOrEqual(100);
    expect(text).toMatch(/^Banned words: `word0`, `word1`.* … and \d+ more$/);
    expect(fitList('x: ', ['a', 'b'], 100)).toBe('x: a, b');
  });

  it('GIVEN an emoji at the cut THEN clip never splits a surrogate pair', () => {
    const text = clip('ab😀cd', 4);
    expect(text).toBe('ab…');
    expect(clip('abc', 3)).toBe('abc');
  });
});
