/**
 * SDXL's prompt encoding and size conditioning (Podell et al. 2023, "SDXL", arXiv:2307.01952), as diffusers'
 * StableDiffusionXLPipeline (`encode_prompt`, `_get_add_time_ids`, step 7 of `__call__`) and Optimum's
 * ORTStableDiffusionXLPipeline do them:
 * - each prompt goes through both tokenizers and both text encoders; the UNet's `encoder_hidden_states` are the
 *   two penultimate hidden states (`hidden_states[-2]`) side by side, token by token, along the feature axis;
 * - `text_embeds` is text_encoder_2's pooled, projected output (`text_embeds`);
 * - `time_ids` is original size + crop top-left + target size, (height, width, 0, 0, height, width): imagine
 *   neither crops nor upscales, so both sizes are the picture's;
 * - with guidance and an empty negative prompt, `force_zeros_for_empty_prompt` gives the unconditional rows zeros
 *   (both the hidden states and `text_embeds`) instead of the encoded empty prompt. diffusers zeroes when no
 *   negative prompt is passed (`negative_prompt is None`); imagine has no difference between none and empty.
 */
import type * as ort from 'onnxruntime-node';
import type { CheckedParams } from './check-inputs.js';
import type { DiffusionModel, FloatType, SdxlParts } from './model.js';
import { floatTensor, runTextEncoder, type RowPlan, type RunClock } from './pipeline-steps.js';

/** What SDXL's encoding reads and sets of a job in the batch (pipeline.ts's Member). */
export interface SdxlRows {
  checked: Pick<CheckedParams, 'prompt' | 'negativePrompt' | 'count'>;
  doCfg: boolean;
  uncondRow: number;
  condRow: number;
  truncated: boolean;
}

/** The UNet inputs SDXL's text side makes: `encoder_hidden_states`, and `text_embeds` and `time_ids` by name. */
export interface SdxlConditioning {
  promptEmbeds: ort.Tensor;
  added: Record<string, ort.Tensor>;
}

/**
 * diffusers' `_get_add_time_ids(original_size, crops_coords_top_left, target_size)`: with the default
 * original_size = target_size = (height, width) and crop (0, 0).
 */
export function addTimeIds(width: number, height: number): number[] {
  return [height, width, 0, 0, height, width];
}

/**
 * Step 3 for SDXL: every prompt (and each CFG job's negative prompt, unless it is zeros) through both encoders in
 * one call each, then each UNet row's hidden states, `text_embeds` and `time_ids`, in the UNet's dtype. Sets each
 * job's `truncated` (either tokenizer cut the prompt).
 */
export async function encodeSdxlPrompts(
  model: DiffusionModel & { sdxl: SdxlParts },
  members: readonly SdxlRows[],
  plan: RowPlan,
  size: { width: number; height: number },
  clock: RunClock,
): Promise<SdxlConditioning> {
  const { sdxl, unet } = model;
  const ids: number[][] = [];
  const ids2: number[][] = [];
  /** Each job's prompt rows among the encoders' outputs; `uncond` undefined: zeros (or no guidance). */
  const promptRow: { uncond?: number; cond: number }[] = [];
  const encode = (text: string): { row: number; truncated: boolean } => {
    const first = model.tokenizer.encode(text);
    const second = sdxl.tokenizer2.encode(text);
    ids2.push(second.ids);
    return { row: ids.push(first.ids) - 1, truncated: first.truncated || second.truncated };
  };
  for (const m of members) {
    const positive = encode(m.checked.prompt);
    const zeros = m.checked.negativePrompt === '' && sdxl.forceZerosForEmptyPrompt;
    const negative = m.doCfg && !zeros ? encode(m.checked.negativePrompt) : undefined;
    m.truncated = positive.truncated || (negative?.truncated ?? false);
    promptRow.push({ cond: positive.row, uncond: negative?.row });
  }

  const seqLen = model.tokenizer.maxLength;
  const { textEncoder, textEncoder2 } = sdxl;
  const [hidden1] = await runTextEncoder(textEncoder, `${model.dir}/text_encoder/model.onnx`, seqLen, ids, [textEncoder.penultimate], clock);
  const [hidden2, pooled] = await runTextEncoder(
    textEncoder2,
    `${model.dir}/text_encoder_2/model.onnx`,
    seqLen,
    ids2,
    [textEncoder2.penultimate, textEncoder2.textEmbeds!],
    clock,
  );
  const width1 = hidden1[0].length / seqLen;
  const width2 = hidden2[0].length / seqLen;
  const width = width1 + width2;
  const pooledWidth = pooled[0].length;

  // Rows that stay zero are the unconditional rows of force_zeros_for_empty_prompt.
  const ehs = new Float32Array(plan.batch * seqLen * width);
  const textEmbeds = new Float32Array(plan.batch * pooledWidth);
  const put = (row: number, prompt: number) => {
    for (let token = 0; token < seqLen; token++) {
      const at = (row * seqLen + token) * width;
      ehs.set(hidden1[prompt].subarray(token * width1, (token + 1) * width1), at);
      ehs.set(hidden2[prompt].subarray(token * width2, (token + 1) * width2), at + width1);
    }
    textEmbeds.set(pooled[prompt], row * pooledWidth);
  };
  members.forEach((m, k) => {
    const { cond, uncond } = promptRow[k];
    for (let i = 0; i < m.checked.count; i++) {
      if (m.doCfg && uncond !== undefined) put(m.uncondRow + i, uncond);
      put(m.condRow + i, cond);
    }
  });

  // The same size conditioning on every row, unconditional ones included (diffusers: negative_add_time_ids = add_time_ids).
  const timeIdsRow = addTimeIds(size.width, size.height);
  const timeIds = new Float32Array(plan.batch * timeIdsRow.length);
  for (let row = 0; row < plan.batch; row++) timeIds.set(timeIdsRow, row * timeIdsRow.length);

  const type = unet.sample.type as FloatType;
  return {
    promptEmbeds: floatTensor(type, ehs, [plan.batch, seqLen, width]),
    added: {
      [unet.textEmbeds!.name]: floatTensor(unet.textEmbeds!.type as FloatType, textEmbeds, [plan.batch, pooledWidth]),
      [unet.timeIds!.name]: floatTensor(unet.timeIds!.type as FloatType, timeIds, [plan.batch, timeIdsRow.length]),
    },
  };
}
