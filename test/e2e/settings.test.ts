import { ApplicationCommandOptionType as T } from 'discord-api-types/v10';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startHarness, type Harness } from '../../tools/discord-emulator/harness.js';

type RawOption = { name: string; type: number; value?: string | number; options?: RawOption[] };
const sub = (name: string, options: RawOption[] = []): RawOption[] => [{ name, type: T.Subcommand, options }];
const group = (groupName: string, name: string, options: RawOption[] = []): RawOption[] => [
  { name: groupName, type: T.SubcommandGroup, options: sub(name, options) },
];

describe('/settings, /queue and /help end to end', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { STAND_IN_STEP_MS: '100', EDIT_INTERVAL_MS: '500', STEPS_HARD_CAP: '150' } });
  });
  afterAll(async () => {
    await h?.close();
  });

  async function run(userId: string, options: RawOption[], name = 'settings') {
    const handle = h.emulator.sendCommand({ name, options: options as never, userId });
    const response = await handle.waitForResponse();
    return { type: response.body.type as number, flags: response.body.data?.flags as number, content: String(response.body.data?.content ?? '') };
  }

  it('GIVEN a member without Manage Server THEN changes are refused, show works, nothing is audited', async () => {
    const { alice, moderator } = h.emulator.defaults.users;
    const shown = await run(alice.id, sub('show'));
    expect(shown.flags & 64).toBe(64);
    expect(shown.content).toMatch(/Steps:\*\* 20 by default, at most 50/);
    for (const userId of [alice.id, moderator.id]) {
      const refused = await run(userId, sub('steps', [{ name: 'max', type: T.Integer, value: 10 }]));
      expect(refused.flags & 64).toBe(64);
      expect(refused.content).toMatch(/Only members with Manage Server, or a moderator role/);
    }
    const words = await run(alice.id, group('banned-words', 'add', [{ name: 'words', type: T.String, value: 'dragon' }]));
    expect(words.content).toMatch(/Only members with Manage Server/);
    expect(h.app.settings.get(h.emulator.defaults.guildId).stepsMax).toBe(50);
    expect(h.app.settings.audit(h.emulator.defaults.guildId)).toEqual([]);
  });

  it('GIVEN the owner THEN steps change, bad values name the range, /imagine follows, and the audit says who and what', async () => {
    const { owner, alice } = h.emulator.defaults.users;
    const tooHigh = await run(owner.id, sub('steps', [{ name: 'max', type: T.Integer, value: 200 }]));
    expect(tooHigh.content).toMatch(/`max` to be an integer from 1 to 150, got `200`/);
    const ok = await run(owner.id, sub('steps', [{ name: 'default', type: T.Integer, value: 5 }, { name: 'max', type: T.Integer, value: 10 }]));
    expect(ok.flags & 64).toBe(64);
    expect(ok.content).toMatch(/stepsMax: 50 → 10/);

    const refused = await run(alice.id, [{ name: 'prompt', type: T.String, value: 'x' }, { name: 'steps', type: T.Integer, value: 11 }], 'imagine');
    expect(refused.content).toMatch(/This server allows at most 10 steps/);
    const accepted = await run(alice.id, [{ name: 'prompt', type: T.String, value: 'default steps' }], 'imagine');
    expect(accepted.type).toBe(5);
    const params = (h.app.db.prepare('SELECT params FROM jobs ORDER BY seq DESC LIMIT 1').get() as { params: string }).params;
    expect(JSON.parse(params)).toMatchObject({ prompt: 'default steps', steps: 5 });

    const audit = await run(owner.id, sub('audit'));
    expect(audit.content).toMatch(new RegExp(`<@${owner.id}> stepsMax: 50 → 10`));
    expect(audit.content).toMatch(new RegExp(`<@${owner.id}> stepsDefault: 20 → 5`));
  });

  it('GIVEN a moderator role set by the owner THEN its members may change settings; banned words are refused in prompts', async () => {
    const { owner, moderator, alice } = h.emulator.defaults.users;
    const roleId = h.emulator.defaults.roles.moderator.id;
    const added = await run(owner.id, group('moderator-role', 'add', [{ name: 'role', type: T.Role, value: roleId }]));
    expect(added.content).toMatch(/moderatorRoleIds/);
    const banned = await run(moderator.id, group('banned-words', 'add', [{ name: 'words', type: T.String, value: 'Dragon, sea serpent' }]));
    expect(banned.content).toMatch(/bannedWords/);
    const list = await run(moderator.id, group('banned-words', 'list'));
    expect(list.content).toMatch(/`dragon`/);
    expect((await run(alice.id, group('banned-words', 'list'))).content).toMatch(/Only members with Manage Server/);

    const refused = await run(alice.id, [{ name: 'prompt', type: T.String, value: 'a red DRAGÓN' }], 'imagine');
    expect(refused.type).toBe(4);
    expect(refused.flags & 64).toBe(64);
    expect(refused.content).toMatch(/does not allow \(“dragon”\)/);
    const reroll = await run(moderator.id, sub('reroll', [{ name: 'who', type: T.String, value: 'anyone' }]));
    expect(reroll.content).toMatch(/rerollWho: requester → anyone/);
  });

  it('GIVEN /queue THEN the caller sees their own jobs with place and ETA, and the totals', async () => {
    const { bob, alice } = h.emulator.defaults.users;
    await run(alice.id, [{ name: 'prompt', type: T.String, value: 'alice busy' }, { name: 'steps', type: T.Integer, value: 10 }], 'imagine');
    await run(bob.id, [{ name: 'prompt', type: T.String, value: 'bob first' }, { name: 'steps', type: T.Integer, value: 10 }], 'imagine');
    await run(bob.id, [{ name: 'prompt', type: T.String, value: 'bob second' }, { name: 'steps', type: T.Integer, value: 10 }], 'imagine');
    const queue = await run(bob.id, [], 'queue');
    expect(queue.flags & 64).toBe(64);
    expect(queue.content).toMatch(/bob second/);
    expect(queue.content).not.toMatch(/alice busy/);
    expect(queue.content).toMatch(/place \d+, starts in about/);
    expect(queue.content).toMatch(/Queue: \d+ running, \d+ waiting, from \d+ members?\./);
    const help = await run(alice.id, [], 'help');
    expect(help.content).toMatch(/React ❌/);
  });

  it('GIVEN an unexpected error in a handler THEN a short apology, a log line with the command, and the bot goes on', async () => {
    const { alice } = h.emulator.defaults.users;
    const queue = h.app.queue;
    const submit = queue.submit.bind(queue);
    queue.submit = () => {
      throw new Error('disk on fire');
    };
    try {
      const answer = await run(alice.id, [{ name: 'prompt', type: T.String, value: 'anything' }], 'imagine');
      expect(answer.flags & 64).toBe(64);
      expect(answer.content).toMatch(/^Sorry, something went wrong on my side/);
      expect(answer.content).not.toMatch(/disk on fire/);
      expect(h.logs.some((line) => line.startsWith('ERROR command failed') && line.includes('"command":"imagine"') && line.includes('disk on fire'))).toBe(true);
    } finally {
      queue.submit = submit;
    }
    const help = await run(alice.id, [], 'help');
    expect(help.content).toMatch(/imagine/);
  });
});

describe('replies that would pass Discord’s 2000 characters', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { STAND_IN_STEP_MS: '200', EDIT_INTERVAL_MS: '500', QUEUE_MAX_PER_MEMBER: '20' } });
  });
  afterAll(async () => {
    await h?.close();
  });

  async function run(userId: string, options: RawOption[], name = 'settings') {
    const response = await h.emulator.sendCommand({ name, options: options as never, userId }).waitForResponse();
    return String(response.body.data?.content ?? '');
  }

  it('GIVEN 200 long banned words THEN every add, the list and the audit answer within 2000 characters, and the change is saved', async () => {
    const { owner } = h.emulator.defaults.users;
    const words = Array.from({ length: 200 }, (_, i) => `w${String(i).padStart(3, '0')}${'x'.repeat(44)}`);
    for (let i = 0; i < words.length; i += 19) {
      const content = await run(owner.id, group('banned-words', 'add', [{ name: 'words', type: T.String, value: words.slice(i, i + 19).join(',') }]));
      expect(content).not.toMatch(/^Sorry/);
      expect(content.length).toBeLessThanOrEqual(2000);
      expect(content).toMatch(/bannedWords/);
    }
    expect(h.app.settings.get(h.emulator.defaults.guildId).bannedWords).toHaveLength(200);
    const list = await run(owner.id, group('banned-words', 'list'));
    expect(list.length).toBeLessThanOrEqual(2000);
    expect(list).toMatch(/`w000x+`/);
    expect(list).toMatch(/and \d+ more/);
    const removed = await run(owner.id, group('banned-words', 'remove', [{ name: 'words', type: T.String, value: words.slice(0, 19).join(',') }]));
    expect(removed).not.toMatch(/^Sorry/);
    expect(removed.length).toBeLessThanOrEqual(2000);
    const audit = await run(owner.id, sub('audit'));
    expect(audit).not.toMatch(/^Sorry/);
    expect(audit.length).toBeLessThanOrEqual(2000);
  });

  it('GIVEN 20 waiting jobs with long prompts THEN /queue answers within 2000 characters and says how many it left out', async () => {
    const { alice } = h.emulator.defaults.users;
    for (let i = 0; i < 20; i++) {
      // Markdown in prompts is escaped when echoed, so each line is longer than the characters shown.
      const prompt = `${i} ${'**bold** _it_ '.repeat(60)}`.slice(0, 900);
      await run(alice.id, [{ name: 'prompt', type: T.String, value: prompt }, { name: 'steps', type: T.Integer, value: 30 }], 'imagine');
    }
    const queue = await run(alice.id, [], 'queue');
    expect(queue).not.toMatch(/^Sorry/);
    expect(queue.length).toBeLessThanOrEqual(2000);
    expect(queue).toMatch(/and \d+ more/);
    expect(queue).toMatch(/Queue: \d+ running, \d+ waiting/);
    expect(queue).toContain('\\*\\*bold\\*\\* \\_it\\_');
    for (const view of [...h.app.queue.snapshot().waiting, ...h.app.queue.snapshot().running]) h.app.queue.cancel(view.job.id);
  });
});
