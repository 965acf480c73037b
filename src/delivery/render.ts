/**
 * What a job's message says at each stage, as Discord message bodies. Pure: no I/O, so the pacer can compare
 * renders and tests can read them. Anything echoing member input goes out with mentions disabled.
 */
import type { APIEmbed, APIAllowedMentions } from 'discord-api-types/v10';
import type { GenerateParams, GenerateResult, NoiseName } from '../diffusion/types.js';
import { DISCORD_LIMITS, clip, echoWithin } from './text.js';
import type { ButtonRow } from './picture-buttons.js';

/** One file to upload with a message. */
export interface OutgoingFile {
  name: string;
  data: Uint8Array;
  contentType?: string;
}

/** A message body for a create or an edit, plus its files. */
export interface MessageBody {
  content: string;
  embeds: APIEmbed[];
  /** Attachments the message keeps after an edit (the new files, by index); [] removes old ones. */
  attachments: { id: number; filename: string }[];
  allowed_mentions: APIAllowedMentions;
  files: OutgoingFile[];
  /** Rows of buttons (the final message's U and V); absent: an edit leaves the message's buttons as they are. */
  components?: ButtonRow[];
}

/** The states a job's message shows before its picture. */
export type JobStage =
  | { kind: 'queued'; place: number; etaMs?: number }
  | { kind: 'running'; step: number; totalSteps: number; elapsedMs: number; etaMs?: number; preview?: OutgoingFile }
  | { kind: 'restarting'; place?: number }
  | { kind: 'cancelled' }
  | { kind: 'failed'; reason: string }
  /** The picture was made and held back by the server's safety rules; `reason` says which rule. */
  | { kind: 'blocked'; reason: string };

/** Nobody is pinged by text the bot echoes: not @everyone, not roles, not users named in a prompt. */
export const NO_MENTIONS: APIAllowedMentions = Object.freeze({ parse: [], replied_user: false }) as APIAllowedMentions;

const BAR_WIDTH = 20;

/** `███████░░░░░░░░░░░░░` for a fraction 0..1. */
export function progressBar(fraction: number): string {
  const filled = Math.max(0, Math.min(BAR_WIDTH, Math.round(fraction * BAR_WIDTH)));
  return '█'.repeat(filled) + '░'.repeat(BAR_WIDTH - filled);
}

/** `4 s`, `1 min 5 s`, `1 h 2 min`: whole seconds, because sub-second ETAs change every edit for nothing. */
export function formatDuration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return seconds % 60 === 0 ? `${minutes} min` : `${minutes} min ${seconds % 60} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/**
 * A waiting job's place as members read it, `next in the queue, starts in about 4 s` or `place 3 in the queue`:
 * one wording for the job's message and for the private answer to a button press.
 * @param place 1-based place among waiting jobs.
 * @param etaMs Estimated milliseconds until it starts; undefined or under 0.5 s says no time.
 */
export function queuePlace(place: number, etaMs: number | undefined): string {
  // Under half a second rounds to "about 0 s", which reads as a promise: say no time then.
  const eta = etaMs === undefined || etaMs < 500 ? '' : `, starts in about ${formatDuration(etaMs)}`;
  return `${place <= 1 ? 'next in the queue' : `place ${place} in the queue`}${eta}`;
}

/**
 * Prompts carry no newlines or line separators (refused at /imagine), so one quote line holds them; Markdown in
 * them is escaped, so `[text](url)` shows as typed instead of a masked link.
 */
function quote(prompt: string): string {
  return `> ${echoWithin(prompt, DISCORD_LIMITS.content - 200)}`;
}

function body(content: string, files: OutgoingFile[] = [], embeds: APIEmbed[] = [], components?: ButtonRow[]): MessageBody {
  return {
    content,
    embeds,
    attachments: files.map((file, id) => ({ id, filename: file.name })),
    allowed_mentions: NO_MENTIONS,
    files,
    ...(components !== undefined && components.length > 0 ? { components } : {}),
  };
}

/** The message for a job that has not produced its picture yet. */
export function renderStage(stage: JobStage, params: Pick<GenerateParams, 'prompt'>): MessageBody {
  switch (stage.kind) {
    case 'queued':
      return body(`⏳ Waiting: ${queuePlace(stage.place, stage.etaMs)}. React ❌ to cancel.\n${quote(params.prompt)}`);
    case 'running': {
      const fraction = stage.totalSteps > 0 ? stage.step / stage.totalSteps : 0;
      const eta = stage.etaMs === undefined ? '' : ` · about ${formatDuration(stage.etaMs)} left`;
      const line = `🎨 Step ${stage.step}/${stage.totalSteps} \`${progressBar(fraction)}\` ${Math.round(fraction * 100)}%${eta}`;
      return body(`${line}\n${quote(params.prompt)}`, stage.preview ? [stage.preview] : []);
    }
    case 'restarting': {
      const place = stage.place === undefined ? '' : ` (place ${stage.place})`;
      return body(`🔄 The bot is restarting; your place in the queue is kept${place}.\n${quote(params.prompt)}`);
    }
    case 'cancelled':
      return body(`🚫 Cancelled.\n${quote(params.prompt)}`);
    case 'failed':
      return body(`⚠️ This picture could not be made: ${stage.reason}\n${quote(params.prompt)}`);
    case 'blocked':
      return body(`🛡️ This picture was not posted: ${stage.reason}.\n${quote(params.prompt)}`);
  }
}

/** A stable key for "would the member see something different": content plus which files, not their bytes. */
export function renderKey(message: MessageBody): string {
  return JSON.stringify([message.content, message.embeds, message.attachments.length, message.components ?? null]);
}

/** The embed's name for each noise generator (GenerateParams.noise). */
const NOISE_LABELS: Record<NoiseName, string> = { torch: 'torch CPU', xoshiro: 'xoshiro (imagine)' };

/** Embed field values are capped at 1024 characters (the bot's own values are short; member text is clipped). */
function field(name: string, value: string, inline = true) {
  return { name, value: clip(value, DISCORD_LIMITS.embedFieldValue), inline };
}

/** Room for the prompt in the embed, leaving the fields and footer their share of the 6000 in all. */
const DESCRIPTION_MAX = 2500;

export interface FinalDetails {
  params: GenerateParams;
  result: Pick<GenerateResult, 'width' | 'height' | 'seed' | 'steps' | 'guidanceScale' | 'scheduler' | 'noise' | 'model' | 'truncated' | 'timings'>;
  /** What the embed shows: the picture, or the grid of several. */
  image: OutgoingFile;
  /**
   * Every file of the message when there are several pictures: `image` (the grid) first, then each picture (see
   * delivery/images.ts, `pictureFiles`). Absent: `image` alone.
   */
  files?: OutgoingFile[];
  jobId: string;
  /** A line above the embed, e.g. who asked, or "reroll of …". Echoed with mentions disabled. */
  headline?: string;
  /**
   * Posted behind a spoiler (the safety rules' `spoiler`): this warning goes above, and the picture stays out of
   * the embed, which would show it uncovered; `image` must then be named `SPOILER_…`.
   */
  spoilerWarning?: string;
  /** The U and V buttons under the pictures (see picture-buttons.ts); absent: none. */
  buttons?: ButtonRow[];
}

/** The finished message: the picture and an embed with every parameter needed to make it again. */
export function renderFinal(details: FinalDetails): MessageBody {
  const { params, result, image } = details;
  const files = details.files ?? [image];
  // Picture i's seed is seed + i (the engine's rule): each is named, so any one can be made again alone.
  const pictures = Math.max(1, files.length - 1);
  const seeds = Array.from({ length: pictures }, (_, i) => String((result.seed + i) >>> 0));
  const fields = [];
  if (params.negativePrompt) fields.push(field('Negative', echoWithin(params.negativePrompt, DISCORD_LIMITS.embedFieldValue), false));
  fields.push(
    field(pictures === 1 ? 'Seed' : 'Seeds', seeds.join(', ')),
    field('Steps', String(result.steps)),
    field('Guidance', String(result.guidanceScale)),
    field('Scheduler', result.scheduler),
    field('Size', `${result.width}×${result.height}`),
    field('Model', result.model),
    // Which generator the seed drove: torch's CPU one gives diffusers' and ComfyUI's picture for the same seed.
    ...(result.noise === undefined ? [] : [field('Noise', NOISE_LABELS[result.noise])]),
    field('Time', result.timings.totalMs < 60_000 ? `${(result.timings.totalMs / 1000).toFixed(1)} s` : formatDuration(result.timings.totalMs)),
  );
  const embed: APIEmbed = {
    description: echoWithin(params.prompt, DESCRIPTION_MAX) + (result.truncated ? '\n*(the prompt was longer than the model reads; the end was cut)*' : ''),
    fields,
    ...(details.spoilerWarning === undefined ? { image: { url: `attachment://${image.name}` } } : {}),
    footer: {
      text: `${pictures === 1 ? 'React 🔁 to roll again with a new seed' : `React 🔁 to roll all ${pictures} again with new seeds`} · job ${details.jobId}`,
    },
  };
  const content = [details.headline, details.spoilerWarning].filter((line) => line !== undefined && line.length > 0).join('\n');
  return body(content, files, [embed], details.buttons);
}
