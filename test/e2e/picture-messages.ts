/**
 * Reading a job's picture message and the answers to its buttons in the emulator, for the e2e tests of U/V presses
 * (picture-buttons, v-burst, real-model).
 */
import type { APIActionRowComponent, APIButtonComponent } from 'discord-api-types/v10';
import type { InteractionHandle, StoredMessage } from '../../src/playground/emulator/index.js';
import { eventually } from '../../tools/discord-emulator/harness.js';

/** The job's message once it carries the picture(s) and the embed. */
export function finished(handle: { original(): StoredMessage | undefined }, timeoutMs = 30_000): Promise<StoredMessage> {
  return eventually(() => {
    const original = handle.original();
    return original && original.message.embeds.length > 0 && original.message.attachments.length > 0 ? original : undefined;
  }, timeoutMs, 'the final message');
}

/** The custom id of the button labelled `label` on `message`; throws when there is none. */
export function customIdOf(message: { message: { components?: unknown } }, label: string): string {
  const rows = (message.message.components ?? []) as APIActionRowComponent<APIButtonComponent>[];
  const button = rows.flatMap((row) => row.components).find((b) => 'label' in b && b.label === label);
  if (!button || !('custom_id' in button)) throw new Error(`No button ${label}`);
  return button.custom_id;
}

/** The ephemeral answer to a press, once the bot has edited its deferred reply. */
export async function answerTo(press: InteractionHandle): Promise<{ content: string; ephemeral: boolean }> {
  const answer = await eventually(() => {
    const original = press.original();
    return original && original.message.content.length > 0 ? original : undefined;
  }, 30_000, 'the answer to the press');
  return { content: answer.message.content, ephemeral: ((answer.message.flags ?? 0) & 64) === 64 };
}
