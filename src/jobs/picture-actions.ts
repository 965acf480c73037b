/**
 * The U and V buttons under a job's pictures, as data: what a button's `custom_id` says and how it is read back.
 * The id carries only the job, the action and the picture; everything else (prompt, seed, model, who asked) is
 * looked up in the journal when the button is pressed, so a button keeps working after a restart and no member
 * can forge parameters into one. Delivery writes these ids, the Discord side reads them.
 */

/** U: a 2× upscale of one picture; V: variations of it. */
export type PictureAction = 'upscale' | 'variation';

export interface PictureButton {
  action: PictureAction;
  jobId: string;
  /** 0-based: picture i of the job (seed + i). Buttons are labelled 1-based (U1 is picture 0). */
  picture: number;
}

/**
 * Discord's limits on buttons (discord.com/developers/docs/components/reference, "Action Row" and "Button"; the
 * same numbers as sapphire's `InteractionLimits.MaximumButtonsPerActionRow` and `ButtonLimits.MaximumCustomIdCharacters`):
 * at most 5 buttons in an action row, at most 5 action rows on a message, a `custom_id` of at most 100 characters.
 */
export const BUTTON_LIMITS = { perRow: 5, rows: 5, customIdLength: 100 } as const;

const PREFIX = 'imagine';
const ACTION_CODES: Record<PictureAction, string> = { upscale: 'u', variation: 'v' };
/** `imagine:u:<job id>:<picture>`; job ids are Crockford base32 (see queue/ids.ts). */
const PATTERN = /^imagine:([uv]):([0-9A-Za-z]{1,40}):(\d{1,2})$/;

/** The custom id of one picture's button, e.g. `imagine:v:01JD…:2` (≤ 50 characters for a 20-character job id). */
export function pictureButtonId(button: PictureButton): string {
  if (!/^[0-9A-Za-z]{1,40}$/.test(button.jobId)) throw new Error(`Expected a job id of letters and digits, got \`${button.jobId}\``);
  if (!Number.isInteger(button.picture) || button.picture < 0 || button.picture > 99) {
    throw new Error(`Expected a picture index from 0 to 99, got \`${button.picture}\``);
  }
  return `${PREFIX}:${ACTION_CODES[button.action]}:${button.jobId}:${button.picture}`;
}

/** The button a custom id names, or undefined when it is not one of ours (another bot's, an old scheme, garbage). */
export function parsePictureButton(customId: string): PictureButton | undefined {
  const match = PATTERN.exec(customId);
  if (match === null) return undefined;
  return { action: match[1] === 'u' ? 'upscale' : 'variation', jobId: match[2], picture: Number(match[3]) };
}

/** The button's label: U1…U4, V1…V4 (1-based, as members count). */
export function pictureButtonLabel(button: Pick<PictureButton, 'action' | 'picture'>): string {
  return `${button.action === 'upscale' ? 'U' : 'V'}${button.picture + 1}`;
}
