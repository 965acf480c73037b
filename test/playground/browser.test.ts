/**
 * The playground in a real browser: Debian's chromium driven by playwright-core (no browser download), against
 * the whole bot as `npm start` runs it with no token (startPlaygroundApp: the embedded model in the ONNX worker
 * pool, the SQLite journal, the fair queue, discord.js over real sockets to the emulator).
 *
 * Skipped, with a warning, where no chromium is installed (`.ci/run` installs it; CHROMIUM_PATH points elsewhere).
 * `PLAYGROUND_SCREENSHOT=docs/playground.png` also saves the page once two pictures are delivered;
 * `PLAYGROUND_BUTTONS_SCREENSHOT=docs/buttons.png` once a grid's V3 and U2 have answered.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPlaygroundApp, type PlaygroundApp } from '../../src/app.js';
import { parseConfig } from '../../src/config.js';
import { captureLogger } from '../../tools/discord-emulator/harness.js';

const CHROMIUM = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find(
  (candidate): candidate is string => candidate !== undefined && candidate !== '' && existsSync(candidate),
);
if (!CHROMIUM) console.warn('[playground browser test] no chromium found (apt-get install chromium, or set CHROMIUM_PATH): skipped');

/** Generous: a slow, shared 2-core machine runs the model, the bot and chromium at once. */
const WAIT = { timeout: 60_000 };

describe.skipIf(!CHROMIUM)('the playground in a real browser', () => {
  let app: PlaygroundApp;
  let browser: Browser;
  let page: Page;
  let dataDir: string;
  const logs: string[] = [];

  const messages = () => page.locator('li.message[data-id]');
  /** Messages answering `line` (e.g. `/imagine`) that `who` sent, as the "Alice used /imagine" line says. */
  const answersTo = (who: string, line: string) =>
    messages().filter({ has: page.locator('.context', { hasText: `${who} used ${line}` }) });
  const pictures = () => page.locator('li.message .embed-image img');

  async function actAs(name: string): Promise<void> {
    await page.locator(`.member[data-name="${name}"]`).click();
    await expect.poll(() => page.locator(`.member[data-name="${name}"]`).getAttribute('aria-checked'), WAIT).toBe('true');
  }

  /** Types a command and presses Enter; resolves once the page has sent it (the box is cleared). */
  async function send(text: string): Promise<void> {
    const box = page.locator('#box');
    await box.fill(text);
    await box.press('Enter');
    await expect.poll(() => box.inputValue(), WAIT).toBe('');
  }

  /** The picture decodes in the browser and, fetched again, is a PNG of that size. */
  async function expectDecodedPicture(image: Locator): Promise<void> {
    await expect.poll(() => image.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0), WAIT).toBe(true);
    const width = await image.evaluate((img: HTMLImageElement) => img.naturalWidth);
    const bytes = Buffer.from(await (await fetch(await image.getAttribute('src') as string)).arrayBuffer());
    const meta = await sharp(bytes).metadata();
    expect(meta.format).toBe('png');
    expect(meta.width).toBe(width);
  }

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'imagine-playground-'));
    // As `npm start` with no token, on a free port; the engine is the default ONNX worker pool.
    const config = parseConfig({ PLAYGROUND_PORT: '0', DATA_DIR: dataDir });
    expect(config.discordToken).toBeUndefined();
    app = await startPlaygroundApp(config, { logger: captureLogger(logs) });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    page.setDefaultTimeout(60_000);
    await page.goto(app.playground.url);
    await page.locator('body[data-ready="true"]').waitFor(WAIT);
  });

  afterAll(async () => {
    await browser?.close();
    await app?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('GIVEN the page THEN it says it is a local playground and how to connect to Discord, on loopback', async () => {
    expect(app.playground.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    await expect.poll(() => page.locator('.local-note').innerText(), WAIT).toContain('DISCORD_TOKEN');
    expect(await page.locator('.member').allInnerTexts()).toEqual([
      expect.stringContaining('Alice'),
      expect.stringContaining('Bob'),
      expect.stringContaining('Mod'),
    ]);
    expect(logs.some((line) => line.includes('local playground ready'))).toBe(true);
  });

  it('GIVEN Alice types /imagine with a prompt THEN she sees progress, then a picture that decodes', async () => {
    await actAs('Alice');
    // Every text the reply shows on its way, recorded in the page as it changes.
    await page.evaluate(() => {
      const seen: string[] = ((window as unknown as { seen: string[] }).seen = []);
      new MutationObserver(() => {
        for (const li of document.querySelectorAll('li.message[data-id]')) seen.push((li as HTMLElement).innerText);
      }).observe(document.getElementById('messages')!, { subtree: true, childList: true, characterData: true });
    });
    await send('/imagine prompt:a red circle on a white background seed:1');
    const reply = answersTo('Alice', '/imagine').last();
    await expectDecodedPicture(reply.locator('.embed-image img'));
    const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
    expect(seen.some((text) => /Step \d+\/20|Waiting/.test(text))).toBe(true);
    await expect.poll(() => reply.locator('.embed').innerText(), WAIT).toMatch(/Seed\s*1/);
    expect(await reply.locator('.embed-description').innerText()).toContain('a red circle on a white background');
  });

  it('GIVEN the picture WHEN Alice clicks 🔁 THEN a second picture arrives', async () => {
    const reroll = answersTo('Alice', '/imagine').last().locator('.reaction[data-emoji="🔁"]');
    await reroll.waitFor(WAIT);
    await reroll.click();
    await expect.poll(() => pictures().count(), WAIT).toBe(2);
    await expectDecodedPicture(pictures().nth(1));
    expect(await messages().last().locator('.context').innerText()).toContain('@imagine');

    const screenshot = process.env.PLAYGROUND_SCREENSHOT;
    if (screenshot) {
      // Both pictures, and the next command typed in the box.
      await expect.poll(() => page.locator('.reaction[data-emoji="❌"]').count(), WAIT).toBe(0);
      await page.setViewportSize({ width: 1280, height: 1320 });
      await page.locator('#box').fill('/imagine prompt:a yellow triangle on a black background steps:12');
      await page.locator('#box').press('Escape');
      await page.mouse.move(1, 1);
      await page.locator('#scroller').evaluate((scroller) => scroller.scrollTo(0, scroller.scrollHeight));
      await page.screenshot({ path: path.resolve(screenshot) });
      await page.locator('#box').fill('');
      await page.setViewportSize({ width: 1280, height: 860 });
    }
  });

  it('GIVEN the moderator lowers the step maximum THEN a member asking for more is refused, ephemerally', async () => {
    await actAs('Mod');
    await send('/settings steps default:8 max:12');
    await expect.poll(() => answersTo('Mod', '/settings steps').last().innerText(), WAIT).toMatch(/12/);

    await actAs('Alice');
    await send('/imagine prompt:a blue square steps:13');
    const refusal = answersTo('Alice', '/imagine').filter({ hasText: 'at most 12 steps' });
    await refusal.waitFor(WAIT);
    expect(await refusal.locator('.ephemeral-note').innerText()).toContain('Only you can see this');
    // Within the maximum the same request goes through.
    await send('/imagine prompt:a blue square steps:12');
    await expect.poll(() => pictures().count(), WAIT).toBe(3);
  });

  it('GIVEN Alice’s /imagine count:4 THEN U1–U4 and V1–V4 under the grid: V3 brings four variations, U2 a 2× resize said to be one', async () => {
    await actAs('Alice');
    await send('/imagine prompt:a red circle on a white background count:4 seed:7 steps:12');
    const grid = answersTo('Alice', '/imagine').last();
    await expect.poll(() => grid.locator('.component-button').allInnerTexts(), WAIT).toEqual(['U1', 'U2', 'U3', 'U4', 'V1', 'V2', 'V3', 'V4']);
    await expectDecodedPicture(grid.locator('.embed-image img'));

    await grid.locator('.component-button', { hasText: 'V3' }).click();
    const variations = messages().filter({ hasText: 'Variations of picture 3' });
    await expectDecodedPicture(variations.locator('.embed-image img'));
    await expect.poll(() => variations.locator('.component-button').count(), WAIT).toBe(8);
    await expect.poll(() => messages().filter({ hasText: 'V3: making 4 variations of picture 3' }).locator('.ephemeral-note').count(), WAIT).toBe(1);

    await grid.locator('.component-button', { hasText: 'U2' }).click();
    const enlarged = messages().filter({ hasText: 'Picture 2, enlarged 2×' });
    await enlarged.waitFor(WAIT);
    expect(await enlarged.innerText()).toContain('a Lanczos resize, no new detail (this model makes only 64×64 pictures)');
    const image = enlarged.locator('img').first();
    await expect.poll(() => image.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth), WAIT).toBe(128);

    const screenshot = process.env.PLAYGROUND_BUTTONS_SCREENSHOT;
    if (screenshot) {
      await page.setViewportSize({ width: 1280, height: 2250 });
      await page.mouse.move(1, 1);
      await grid.scrollIntoViewIfNeeded();
      await page.locator('#scroller').evaluate((scroller) => scroller.scrollTo(0, scroller.scrollHeight));
      await page.screenshot({ path: path.resolve(screenshot) });
      await page.setViewportSize({ width: 1280, height: 860 });
    }
  });

  it('GIVEN Bob over the per-member cap THEN only Bob sees the refusal', async () => {
    // Long jobs, so Bob's stay waiting while the first runs (the cap counts waiting jobs, 2 by default).
    await actAs('Mod');
    await send('/settings steps default:20 max:150');
    await expect.poll(() => answersTo('Mod', '/settings steps').last().innerText(), WAIT).toMatch(/150/);

    await actAs('Bob');
    const refusals = answersTo('Bob', '/imagine').filter({ hasText: 'the most this server allows' });
    for (let sent = 0; sent < 8 && (await refusals.count()) === 0; sent++) {
      await send(`/imagine prompt:a green triangle steps:150 seed:${sent}`);
    }
    await refusals.first().waitFor(WAIT);
    expect(await refusals.first().getAttribute('data-ephemeral')).toBe('true');
    expect(await refusals.first().innerText()).toContain('Only you can see this');

    await actAs('Alice');
    await expect.poll(() => refusals.count(), WAIT).toBe(0);
    await actAs('Bob');
    await expect.poll(() => refusals.count(), WAIT).toBeGreaterThan(0);
  });
});
