/**
 * What a worker says about its ticket's jobs, as BullMQ progress data (QueueEvents brings it to every bot):
 * plain JSON, previews as base64 RGB.
 */
import type { StepProgress } from '../diffusion/types.js';

export type TicketEvent =
  | { type: 'started'; jobs: string[]; worker: string }
  | { type: 'progress'; job: string; step: number; totalSteps: number; elapsedMs: number; preview?: { width: number; height: number; rgb: string } }
  | { type: 'outcome'; job: string; state: 'made' | 'failed' | 'cancelled' };

export function encodeProgress(jobId: string, progress: StepProgress): TicketEvent {
  const event: TicketEvent = { type: 'progress', job: jobId, step: progress.step, totalSteps: progress.totalSteps, elapsedMs: progress.elapsedMs };
  if (progress.preview !== undefined) {
    const { width, height, rgb } = progress.preview;
    event.preview = { width, height, rgb: Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength).toString('base64') };
  }
  return event;
}

export function decodeProgress(event: Extract<TicketEvent, { type: 'progress' }>): StepProgress {
  const progress: StepProgress = { step: event.step, totalSteps: event.totalSteps, elapsedMs: event.elapsedMs };
  if (event.preview !== undefined) {
    progress.preview = { width: event.preview.width, height: event.preview.height, rgb: new Uint8Array(Buffer.from(event.preview.rgb, 'base64')) };
  }
  return progress;
}

/** Whether BullMQ progress data is one of ours. */
export function isTicketEvent(data: unknown): data is TicketEvent {
  return typeof data === 'object' && data !== null && typeof (data as { type?: unknown }).type === 'string';
}
