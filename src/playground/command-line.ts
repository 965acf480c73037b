/**
 * What the playground's message box sends: a typed line such as `/settings steps max:8` read against the
 * commands the bot registered, into Discord's interaction options. It checks what Discord's own client checks
 * before sending (a known command and subcommand, required options, integers, choices, min/max), so the bot
 * sees the same payloads as from Discord and nothing that Discord would never send.
 */
import {
  ApplicationCommandOptionType,
  type APIApplicationCommand,
  type APIApplicationCommandBasicOption,
  type APIApplicationCommandInteractionDataOption,
  type APIApplicationCommandOption,
  type InteractionType,
} from 'discord-api-types/v10';

export type DataOption = APIApplicationCommandInteractionDataOption<InteractionType.ApplicationCommand>;

/** A line the playground cannot send, with a message for the member (like Discord's client refusing). */
export class CommandLineError extends Error {
  override readonly name = 'CommandLineError';
}

export interface ParsedCommandLine {
  name: string;
  options: DataOption[];
  /** `/settings steps`: the command and its subcommands, as the page shows "Alice used /settings steps". */
  path: string;
}

/** How `role:` and `user:` values become ids (by name, mention or id). */
export interface Mentionables {
  role(text: string): string | undefined;
  user(text: string): string | undefined;
}

const SUBCOMMAND_TYPES = new Set<ApplicationCommandOptionType>([
  ApplicationCommandOptionType.Subcommand,
  ApplicationCommandOptionType.SubcommandGroup,
]);

/**
 * Reads `/name [group] [subcommand] option:value …`. A value runs to the next ` known-option:`; text before any
 * option name goes to the first required string option (`/imagine a red circle` is `prompt:a red circle`).
 * @throws CommandLineError naming what was expected.
 */
export function parseCommandLine(text: string, commands: readonly APIApplicationCommand[], mentionables: Mentionables): ParsedCommandLine {
  const line = text.trim();
  if (!line.startsWith('/')) {
    throw new CommandLineError('The bot answers slash commands: type / and a command, e.g. `/imagine prompt:a red circle`.');
  }
  const words = line.slice(1).split(/\s+/);
  const name = (words.shift() ?? '').toLowerCase();
  const command = commands.find((c) => c.name === name);
  if (!command) {
    const known = commands.map((c) => `/${c.name}`).join(', ');
    throw new CommandLineError(`Expected one of ${known}, got \`/${clip(name)}\`.`);
  }

  const path = [command.name];
  let declared: readonly APIApplicationCommandOption[] = command.options ?? [];
  let rest = words.join(' ');
  const chain: { name: string; type: ApplicationCommandOptionType }[] = [];
  while (declared.some((o) => SUBCOMMAND_TYPES.has(o.type))) {
    const [word = '', ...others] = rest.split(/\s+/);
    const chosen = declared.find((o) => o.name === word.toLowerCase() && SUBCOMMAND_TYPES.has(o.type));
    if (!chosen) {
      const names = declared.map((o) => o.name).join(', ');
      throw new CommandLineError(`\`/${path.join(' ')}\` needs one of: ${names}.`);
    }
    chain.push({ name: chosen.name, type: chosen.type });
    path.push(chosen.name);
    declared = 'options' in chosen ? (chosen.options ?? []) : [];
    rest = others.join(' ');
  }

  const leaf = readOptions(rest.trim(), declared as readonly APIApplicationCommandBasicOption[], mentionables, `/${path.join(' ')}`);
  // Discord nests the chosen subcommand (and its group) around the leaf's options.
  let options: DataOption[] = leaf;
  for (const step of [...chain].reverse()) {
    options = [{ name: step.name, type: step.type, options } as DataOption];
  }
  return { name: command.name, options, path: `/${path.join(' ')}` };
}

function readOptions(
  rest: string,
  declared: readonly APIApplicationCommandBasicOption[],
  mentionables: Mentionables,
  usage: string,
): DataOption[] {
  const values = new Map<string, string>();
  if (rest.length > 0) {
    const names = declared.map((o) => escapeRegExp(o.name)).join('|');
    const marker = names ? new RegExp(`(?:^|\\s)(${names}):`, 'gi') : undefined;
    const found = marker ? [...rest.matchAll(marker)] : [];
    const leading = (found[0]?.index ?? rest.length) > 0 ? rest.slice(0, found[0]?.index ?? rest.length).trim() : '';
    if (leading) {
      const first = declared.find((o) => o.required && o.type === ApplicationCommandOptionType.String);
      if (!first) {
        const hint = declared.length ? ` Its options: ${declared.map((o) => `${o.name}:`).join(' ')}` : ' It takes no options.';
        throw new CommandLineError(`Expected \`option:value\` after \`${usage}\`, got \`${clip(leading)}\`.${hint}`);
      }
      values.set(first.name, leading);
    }
    for (const [i, match] of found.entries()) {
      const optionName = match[1]!.toLowerCase();
      const start = match.index! + match[0].length;
      const end = found[i + 1]?.index ?? rest.length;
      if (values.has(optionName)) throw new CommandLineError(`\`${optionName}\` is given twice.`);
      values.set(optionName, rest.slice(start, end).trim());
    }
  }

  const out: DataOption[] = [];
  for (const option of declared) {
    const raw = values.get(option.name);
    if (raw === undefined || raw === '') {
      if (option.required) throw new CommandLineError(`\`${usage}\` needs \`${option.name}:\` (${option.description}).`);
      continue;
    }
    out.push(convert(option, raw, mentionables));
  }
  return out;
}

/** One value, typed and checked as Discord's client would before sending it. */
function convert(option: APIApplicationCommandBasicOption, raw: string, mentionables: Mentionables): DataOption {
  const { name } = option;
  switch (option.type) {
    case ApplicationCommandOptionType.String: {
      const value = 'choices' in option && option.choices?.length ? pickChoice(name, raw, option.choices) : raw;
      if ('max_length' in option && option.max_length !== undefined && String(value).length > option.max_length) {
        throw new CommandLineError(`\`${name}\` may be at most ${option.max_length} characters, got ${String(value).length}.`);
      }
      return { name, type: option.type, value: String(value) };
    }
    case ApplicationCommandOptionType.Integer:
    case ApplicationCommandOptionType.Number: {
      const integer = option.type === ApplicationCommandOptionType.Integer;
      let value: number;
      if ('choices' in option && option.choices?.length) value = Number(pickChoice(name, raw, option.choices));
      else if (/^-?\d+(\.\d+)?$/.test(raw)) value = Number(raw);
      else throw new CommandLineError(`Expected \`${name}\` to be ${integer ? 'a whole number' : 'a number'}, got \`${clip(raw)}\`.`);
      if (integer && !Number.isInteger(value)) throw new CommandLineError(`Expected \`${name}\` to be a whole number, got \`${clip(raw)}\`.`);
      const min = 'min_value' in option ? option.min_value : undefined;
      const max = 'max_value' in option ? option.max_value : undefined;
      if ((min !== undefined && value < min) || (max !== undefined && value > max)) {
        throw new CommandLineError(`Expected \`${name}\` from ${min ?? '…'} to ${max ?? '…'}, got \`${value}\`.`);
      }
      return { name, type: option.type, value };
    }
    case ApplicationCommandOptionType.Boolean: {
      const value = /^(true|yes|on|1)$/i.test(raw) ? true : /^(false|no|off|0)$/i.test(raw) ? false : undefined;
      if (value === undefined) throw new CommandLineError(`Expected \`${name}\` to be true or false, got \`${clip(raw)}\`.`);
      return { name, type: option.type, value };
    }
    case ApplicationCommandOptionType.Role: {
      const id = mentionables.role(raw);
      if (!id) throw new CommandLineError(`No role \`${clip(raw)}\` in this server.`);
      return { name, type: option.type, value: id };
    }
    case ApplicationCommandOptionType.User: {
      const id = mentionables.user(raw);
      if (!id) throw new CommandLineError(`No member \`${clip(raw)}\` in this server.`);
      return { name, type: option.type, value: id };
    }
    default:
      throw new CommandLineError(`The playground cannot send \`${name}\` options of type ${option.type}.`);
  }
}

function pickChoice(name: string, raw: string, choices: readonly { name: string; value: string | number }[]): string | number {
  const wanted = raw.trim().toLowerCase();
  const choice = choices.find((c) => String(c.value).toLowerCase() === wanted || c.name.toLowerCase() === wanted);
  if (!choice) throw new CommandLineError(`Expected \`${name}\` to be one of ${choices.map((c) => c.value).join(', ')}, got \`${clip(raw)}\`.`);
  return choice.value;
}

/** Member text quoted back: one line, at most 40 characters. */
function clip(text: string): string {
  const line = text.replace(/\s+/g, ' ').replace(/`/g, "'");
  return line.length > 40 ? `${line.slice(0, 39)}…` : line;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
