/**
 * Several models end to end (issue 12): the real worker pool with pixel-tiny as the bot's default model and the
 * test fixtures as the library; `/imagine model:`, its autocomplete, 🔁, a channel's default, a denied model.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApplicationCommandOptionType as T } from 'discord-api-types/v10';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoredMessage } from '../../src/playground/emulator/index.js';
import { eventually, startHarness, type Harness } from '../../tools/discord-emulator/harness.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
type RawOption = { name: string; type: number; value?: string | number; options?: RawOption[] };
const modelSub = (name: string, options: RawOption[]): RawOption[] => [
  { name: 'model', type: T.SubcommandGroup, options: [{ name, type: T.Subcommand, options }] },
];

function finished(handle: { original(): StoredMessage | undefined }): Promise<StoredMessage> {
  return eventually(() => {
    const original = handle.original();
    return original && original.message.embeds.length > 0 && original.message.attachments.length > 0 ? original : undefined;
  }, 60_000, 'the final image');
}

const embedText = (message: StoredMessage) => JSON.stringify(message.message.embeds[0]);
const lastParams = (h: Harness) =>
  JSON.parse((h.app.db.prepare('SELECT params FROM jobs ORDER BY seq DESC LIMIT 1').get() as { params: string }).params) as Record<string, unknown>;

describe('several models end to end (worker pool)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      env: {
        SAMPLER: 'workers',
        MODEL_DIR: path.join(ROOT, 'test/fixtures/models/pixel-tiny'),
        MODELS_DIR: path.join(ROOT, 'test/fixtures/models'),
        EDIT_INTERVAL_MS: '0',
      },
      emulator: { rateLimits: [] },
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('GIVEN a member typing in `model` THEN autocomplete answers the installed models with their kind', async () => {
    const handle = h.emulator.sendAutocomplete({ name: 'imagine', options: { prompt: 'x', model: 'tiny' }, focused: 'model' });
    const response = await handle.waitForResponse();
    expect(response.body.type).toBe(8);
    const choices = response.body.data?.choices as { name: string; value: string }[];
    expect(choices.map((c) => c.value)).toEqual(['pixel-tiny', 'lcm-tiny', 'sd-tiny', 'sd-tiny-fp16', 'sdxl-tiny']);
    expect(choices.find((c) => c.value === 'pixel-tiny')?.name).toBe('pixel-tiny (pixel, default)');
    expect(choices.find((c) => c.value === 'lcm-tiny')?.name).toBe('lcm-tiny (LCM)');
    expect(choices.find((c) => c.value === 'sdxl-tiny')?.name).toBe('sdxl-tiny (SDXL)');
  });

  it('GIVEN /imagine model:sd-tiny THEN the picture is made by sd-tiny and its embed says so; 🔁 keeps the model', async () => {
    const { emulator } = h;
    const { alice } = emulator.defaults.users;
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'a red circle', model: 'sd-tiny', steps: 2 }, userId: alice.id });
    const image = await finished(handle);
    expect(embedText(image)).toContain('sd-tiny');
    expect(lastParams(h)).toMatchObject({ model: 'sd-tiny' });

    await eventually(() => image.reactions.get('🔁')?.has(emulator.defaults.botUserId), 10_000, 'the bot’s 🔁');
    emulator.addReaction({ userId: alice.id, messageId: image.message.id, emoji: '🔁' });
    const reroll = await eventually(
      () => emulator.messages(emulator.defaults.channelId).find((m) => m.message.message_reference?.message_id === image.message.id && m.message.embeds.length > 0 && m.message.attachments.length > 0),
      60_000,
      'the reroll',
    );
    expect(embedText(reroll)).toContain('sd-tiny');
  });

  it('GIVEN /imagine model:sdxl-tiny THEN the SDXL pipeline makes a real PNG at SDXL’s 1024² and the embed names the model', async () => {
    const { emulator } = h;
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'a castle on a hill', model: 'sdxl-tiny', steps: 2 } });
    const image = await finished(handle);
    expect(embedText(image)).toContain('sdxl-tiny');
    expect(lastParams(h)).toMatchObject({ model: 'sdxl-tiny', steps: 2 });
    const png = emulator.attachmentBytes(image.message.id)!;
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([1024, 1024]);
    expect(new Set(data).size).toBeGreaterThan(16);
  });

  it('GIVEN a model that is not installed THEN /imagine is refused in one line naming the installed ones', async () => {
    const handle = h.emulator.sendCommand({ name: 'imagine', options: { prompt: 'x', model: 'sdxl-huge' } });
    const response = await handle.waitForResponse();
    expect(response.body.data?.flags & 64).toBe(64);
    expect(response.body.data?.content).toBe('There is no model `sdxl-huge` (installed: pixel-tiny, lcm-tiny, sd-tiny, sd-tiny-fp16, sdxl-tiny).');
  });

  it('GIVEN a channel default of lcm-tiny THEN /imagine without a model uses it, with the LCM’s own defaults (4 steps, no guidance)', async () => {
    const { emulator } = h;
    const set = emulator.sendCommand({
      name: 'settings',
      userId: emulator.defaults.users.owner.id,
      options: modelSub('default', [
        { name: 'name', type: T.String, value: 'lcm-tiny' },
        { name: 'channel', type: T.Channel, value: emulator.defaults.channelId },
      ]) as never,
    });
    expect(String((await set.waitForResponse()).body.data?.content)).toMatch(/channelModels: \(none\) → <#\d+>: lcm-tiny/);
    const image = await finished(emulator.sendCommand({ name: 'imagine', options: { prompt: 'a blue square' } }));
    expect(embedText(image)).toContain('lcm-tiny');
    expect(lastParams(h)).toMatchObject({ model: 'lcm-tiny', steps: 4, guidanceScale: 0 });
  });

  it('GIVEN the server denies sd-tiny THEN /imagine model:sd-tiny is refused, and autocomplete leaves it out', async () => {
    const { emulator } = h;
    const deny = emulator.sendCommand({
      name: 'settings',
      userId: emulator.defaults.users.owner.id,
      options: modelSub('deny', [{ name: 'name', type: T.String, value: 'sd-tiny' }]) as never,
    });
    expect(String((await deny.waitForResponse()).body.data?.content)).toMatch(/modelsDenied: added 1: `sd-tiny`/);
    const refused = await emulator.sendCommand({ name: 'imagine', options: { prompt: 'x', model: 'sd-tiny' } }).waitForResponse();
    expect(refused.body.data?.content).toBe('This server does not allow the model `sd-tiny`.');
    const suggested = await emulator.sendAutocomplete({ name: 'imagine', options: { prompt: 'x', model: 'sd' }, focused: 'model' }).waitForResponse();
    expect((suggested.body.data?.choices as { value: string }[]).map((c) => c.value)).toEqual(['sd-tiny-fp16', 'sdxl-tiny']);
    const allowable = await emulator
      .sendAutocomplete({ name: 'settings', options: modelSub('allow', [{ name: 'name', type: T.String, value: 'sd' }]) as never, focused: 'name' })
      .waitForResponse();
    expect(allowable.body.data?.choices).toEqual([{ name: 'sd-tiny', value: 'sd-tiny' }]);
    const audit = h.app.settings.audit(emulator.defaults.guildId).map((entry) => entry.key);
    expect(audit).toEqual(expect.arrayContaining(['modelsDenied', 'channelModels']));
  });
});
