import { ApplicationCommandOptionType, ApplicationCommandType } from 'discord-api-types/v10';
import { formError } from './api-error.js';

/**
 * Limits on application command definitions (discord.com/developers/docs/interactions/application-commands
 * #application-command-object and #registering-a-command): names 1–32 lowercase word characters,
 * descriptions 1–100, 25 options and 25 choices, string lengths up to 6000, and 8000 characters
 * of names, descriptions and choice values together per command.
 */
export const COMMAND_LIMITS = {
  commands: 100,
  name: 32,
  description: 100,
  options: 25,
  choices: 25,
  choiceName: 100,
  choiceValue: 100,
  stringLength: 6000,
  totalCharacters: 8000,
} as const;

// Discord's documented CHAT_INPUT name regex, without the Devanagari/Thai extras.
const CHAT_INPUT_NAME = /^[-_'\p{L}\p{N}]{1,32}$/u;

type Definition = Record<string, any>;

/** Throws Discord's 50035 for the first violation in a bulk-overwrite body (paths are `0.options.1.name`). */
export function validateCommands(body: unknown): Definition[] {
  if (!Array.isArray(body)) throw formError('', 'LIST_TYPE_CONVERT', 'Only iterables may be used in a ListType');
  if (body.length > COMMAND_LIMITS.commands) throw formError('', 'BASE_TYPE_MAX_LENGTH', `Must be ${COMMAND_LIMITS.commands} or fewer in length.`);
  const seen = new Set<string>();
  for (const [i, command] of (body as Definition[]).entries()) {
    validateCommand(command, String(i));
    const key = `${command.type ?? 1}:${command.name}`;
    if (seen.has(key)) throw formError(`${i}.name`, 'APPLICATION_COMMANDS_DUPLICATE_NAME', `Application command names must be unique`);
    seen.add(key);
  }
  return body as Definition[];
}

export function validateCommand(command: Definition, at: string): void {
  const type = command.type ?? ApplicationCommandType.ChatInput;
  if (type === ApplicationCommandType.ChatInput) {
    checkName(command.name, `${at}.name`);
    checkDescription(command.description, `${at}.description`);
  } else if (typeof command.name !== 'string' || command.name.length < 1 || command.name.length > COMMAND_LIMITS.name) {
    throw formError(`${at}.name`, 'BASE_TYPE_BAD_LENGTH', `Must be between 1 and ${COMMAND_LIMITS.name} in length.`);
  }
  checkOptions(command.options, `${at}.options`);
  const total = countCharacters(command);
  if (total > COMMAND_LIMITS.totalCharacters) {
    throw formError(at, 'APPLICATION_COMMAND_TOO_LARGE', `Command exceeds maximum size (${COMMAND_LIMITS.totalCharacters})`);
  }
}

function checkName(name: unknown, path: string): void {
  if (typeof name !== 'string' || !CHAT_INPUT_NAME.test(name)) {
    throw formError(path, 'APPLICATION_COMMAND_INVALID_NAME', `Command name is invalid`);
  }
  if (name !== name.toLowerCase()) throw formError(path, 'APPLICATION_COMMAND_INVALID_NAME', 'Command name is invalid');
}

function checkDescription(description: unknown, path: string): void {
  if (typeof description !== 'string' || description.length < 1 || description.length > COMMAND_LIMITS.description) {
    throw formError(path, 'BASE_TYPE_BAD_LENGTH', `Must be between 1 and ${COMMAND_LIMITS.description} in length.`);
  }
}

function checkOptions(options: unknown, at: string): void {
  if (options === undefined || options === null) return;
  if (!Array.isArray(options)) throw formError(at, 'LIST_TYPE_CONVERT', 'Only iterables may be used in a ListType');
  if (options.length > COMMAND_LIMITS.options) throw formError(at, 'BASE_TYPE_MAX_LENGTH', `Must be ${COMMAND_LIMITS.options} or fewer in length.`);
  let sawOptional = false;
  const names = new Set<string>();
  for (const [i, option] of (options as Definition[]).entries()) {
    const path = `${at}.${i}`;
    checkName(option.name, `${path}.name`);
    checkDescription(option.description, `${path}.description`);
    if (names.has(option.name)) throw formError(`${path}.name`, 'APPLICATION_COMMAND_OPTIONS_DUPLICATE_NAME', 'Option names must be unique');
    names.add(option.name);
    if (option.required && sawOptional) {
      throw formError(at, 'APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID', 'Required options must be placed before non-required options');
    }
    if (!option.required) sawOptional = true;
    if (option.type === ApplicationCommandOptionType.String) {
      for (const key of ['min_length', 'max_length'] as const) {
        const value = option[key];
        if (value !== undefined && (!Number.isInteger(value) || value < (key === 'max_length' ? 1 : 0) || value > COMMAND_LIMITS.stringLength)) {
          throw formError(`${path}.${key}`, 'NUMBER_TYPE_MAX', `int value should be less than or equal to ${COMMAND_LIMITS.stringLength}.`);
        }
      }
    }
    if (option.choices !== undefined) {
      if (!Array.isArray(option.choices) || option.choices.length > COMMAND_LIMITS.choices) {
        throw formError(`${path}.choices`, 'BASE_TYPE_MAX_LENGTH', `Must be ${COMMAND_LIMITS.choices} or fewer in length.`);
      }
      for (const [j, choice] of (option.choices as Definition[]).entries()) {
        if (typeof choice.name !== 'string' || choice.name.length < 1 || choice.name.length > COMMAND_LIMITS.choiceName) {
          throw formError(`${path}.choices.${j}.name`, 'BASE_TYPE_BAD_LENGTH', `Must be between 1 and ${COMMAND_LIMITS.choiceName} in length.`);
        }
        if (typeof choice.value === 'string' && choice.value.length > COMMAND_LIMITS.choiceValue) {
          throw formError(`${path}.choices.${j}.value`, 'BASE_TYPE_BAD_LENGTH', `Must be between 1 and ${COMMAND_LIMITS.choiceValue} in length.`);
        }
      }
    }
    checkOptions(option.options, `${path}.options`);
  }
}

/** Names, descriptions and choice names/values, recursively: what Discord counts toward 8000. */
function countCharacters(node: Definition): number {
  let total = String(node.name ?? '').length + String(node.description ?? '').length;
  for (const choice of node.choices ?? []) total += String(choice.name).length + String(choice.value).length;
  for (const option of node.options ?? []) total += countCharacters(option);
  return total;
}
