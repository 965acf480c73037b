/**
 * A request made from a finished job (🔁, a U or V button): the original's parameters checked again under the
 * server's rules of today (rerollParams), with the original's model, checked again too (it may have been removed
 * or denied since), and the channel's safety rule. One function, so 🔁 and the buttons refuse the same things
 * with the same words.
 */
import type { BotContext } from '../../commands/index.js';
import type { ModelInfo } from '../diffusion/types.js';
import type { JobRecord } from '../jobs/types.js';
import { chooseModel, rerollParams, type GuildRequest } from '../moderation/request-rules.js';
import { assertRequestAllowed } from '../moderation/safety-rules.js';
import type { GuildSettings } from '../store/settings.js';

export interface FollowUpRequest extends GuildRequest {
  /** The model's facts (size, fixed size), when a worker has loaded it. */
  model: ModelInfo | undefined;
  /** Whether the channel is age-restricted (recorded on the new job for delivery). */
  channelNsfw: boolean | undefined;
}

/**
 * @throws UserError for the first rule the follow-up breaks (model gone or denied, steps or count over today's
 *   maximum, a banned word added since, an unchecked model refused here).
 */
export async function followUpRequest(job: JobRecord, settings: GuildSettings, channelId: string, bot: BotContext): Promise<FollowUpRequest> {
  const models = await bot.models();
  const choice = chooseModel(job.params.model ?? models.find((m) => m.isDefault)?.name, settings, channelId, models);
  const model = choice.isDefault ? bot.model : choice.info;
  const request = rerollParams(job, settings, { model, ...(choice.isDefault ? {} : { modelName: choice.name }) });
  const channelNsfw = await bot.channelAgeRestricted(channelId);
  assertRequestAllowed({
    mode: settings.safetyMode,
    refuseUnchecked: settings.refuseUnchecked,
    channelNsfw,
    modelChecked: (choice.isDefault ? bot.model.safetyChecker : (choice.info?.safetyChecker ?? choice.safetyChecker)) === true,
  });
  return { ...request, model, channelNsfw };
}
