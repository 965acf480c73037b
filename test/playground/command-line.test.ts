import { ApplicationCommandOptionType as T, type APIApplicationCommand } from 'discord-api-types/v10';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../../commands/index.js';
import { CommandLineError, parseCommandLine, type Mentionables } from '../../src/playground/command-line.js';

/** The bot's own definitions, as the emulator stores them once registered. */
const commands = [...COMMANDS.values()].map((command) => JSON.parse(JSON.stringify(command.data)) as APIApplicationCommand);
const mentionables: Mentionables = {
  role: (text) => ({ moderator: '111111111111111111', '<@&111111111111111111>': '111111111111111111' })[text.toLowerCase()],
  user: () => undefined,
};
const parse = (text: string) => parseCommandLine(text, commands, mentionables);
const refusal = (text: string) => {
  try {
    parse(text);
  } catch (error) {
    expect(error).toBeInstanceOf(CommandLineError);
    return (error as Error).message;
  }
  throw new Error(`expected \`${text}\` to be refused`);
};

describe('the playground message box', () => {
  it('GIVEN /imagine with options THEN each is typed as the registered command declares it', () => {
    expect(parse('/imagine prompt:a red circle steps:10 guidance:7.5 scheduler:euler seed:3')).toEqual({
      name: 'imagine',
      path: '/imagine',
      options: [
        { name: 'prompt', type: T.String, value: 'a red circle' },
        { name: 'steps', type: T.Integer, value: 10 },
        { name: 'seed', type: T.Integer, value: 3 },
        { name: 'guidance', type: T.Number, value: 7.5 },
        { name: 'scheduler', type: T.String, value: 'euler' },
      ],
    });
  });

  it('GIVEN text before any option name THEN it is the prompt; a colon that names no option stays in the value', () => {
    expect(parse('/imagine a red circle').options).toEqual([{ name: 'prompt', type: T.String, value: 'a red circle' }]);
    expect(parse('/imagine prompt:ratio 16:9, a square aspect:Landscape (3:2)').options).toEqual([
      { name: 'prompt', type: T.String, value: 'ratio 16:9, a square' },
      { name: 'aspect', type: T.String, value: 'landscape' },
    ]);
  });

  it('GIVEN subcommands and groups THEN they nest as Discord sends them', () => {
    expect(parse('/settings steps default:8 max:12')).toEqual({
      name: 'settings',
      path: '/settings steps',
      options: [{ name: 'steps', type: T.Subcommand, options: [{ name: 'default', type: T.Integer, value: 8 }, { name: 'max', type: T.Integer, value: 12 }] }],
    });
    expect(parse('/settings banned-words add words:foo, bar baz').options).toEqual([
      { name: 'banned-words', type: T.SubcommandGroup, options: [{ name: 'add', type: T.Subcommand, options: [{ name: 'words', type: T.String, value: 'foo, bar baz' }] }] },
    ]);
    expect(parse('/settings moderator-role add role:Moderator').options[0]).toMatchObject({
      options: [{ name: 'add', options: [{ name: 'role', type: T.Role, value: '111111111111111111' }] }],
    });
    expect(parse('/queue')).toEqual({ name: 'queue', path: '/queue', options: [] });
  });

  it.each([
    ['hello', /slash commands/],
    ['/nope', /Expected one of \/imagine, \/queue, \/settings, \/help, got `\/nope`/],
    ['/imagine steps:10', /needs `prompt:`/],
    ['/imagine prompt:x steps:ten', /Expected `steps` to be a whole number, got `ten`/],
    ['/imagine prompt:x steps:2.5', /whole number/],
    ['/imagine prompt:x steps:0', /Expected `steps` from 1 to 1000, got `0`/],
    ['/imagine prompt:x scheduler:fast', /Expected `scheduler` to be one of ddpm, .*got `fast`/],
    ['/imagine prompt:a steps:1 steps:2', /`steps` is given twice/],
    ['/settings', /`\/settings` needs one of: show, steps/],
    ['/settings banned-words', /`\/settings banned-words` needs one of: add, remove, list/],
    ['/settings moderator-role add role:Admins', /No role `Admins`/],
    ['/help me', /Expected `option:value` after `\/help`, got `me`. It takes no options/],
    [`/imagine prompt:${'x'.repeat(2000)}`, /`prompt` may be at most \d+ characters/],
  ])('GIVEN `%s` THEN it is refused before anything is sent', (text, message) => {
    const said = refusal(text);
    expect(said).toMatch(message);
    expect(said.length).toBeLessThan(300);
  });
});
