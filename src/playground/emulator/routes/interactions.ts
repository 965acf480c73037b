import {
  InteractionResponseType,
  InteractionType,
  MessageFlags,
  MessageType,
  type APIInteractionResponse,
  type RESTPostAPIInteractionCallbackWithResponseResult,
} from 'discord-api-types/v10';
import { errors, formError } from '../api-error.js';
import { allowedResponseTypes, tokenExpired, type InteractionState } from '../interactions.js';
import type { MessageBody, StoredMessage } from '../message-store.js';
import type { UploadedFile } from '../multipart.js';
import type { RouteContext, RouteResult, Router } from '../router.js';
import {
  announceCreate,
  announceDelete,
  announceUpdate,
  asMessageBody,
  checkMessage,
  isEphemeral,
  noContent,
  ok,
  type EmulatorCore,
} from './shared.js';

/** The interaction callback and the interaction webhooks (follow-ups and edits through the token). */
export function registerInteractionRoutes(router: Router, core: EmulatorCore): void {
  const { store } = core;

  // The interaction callback: the first response, with the 3 s deadline and one-answer rule.
  router.add(
    'POST',
    '/interactions/:interactionId/:token/callback',
    (ctx) => interactionCallback(core, ctx),
    { auth: false },
  );

  // Interaction webhooks: follow-ups and edits through the token, no bot Authorization.
  router.add('POST', '/webhooks/:applicationId/:token', (ctx) => followUp(core, ctx), { auth: false });
  const messageRoute = '/webhooks/:applicationId/:token/messages/:messageId';
  router.add('GET', messageRoute, ({ params }) => ok(webhookMessage(core, params).message), { auth: false });
  router.add(
    'PATCH',
    messageRoute,
    ({ params, body }) => {
      const state = requireWebhookInteraction(core, params);
      const stored = webhookMessage(core, params, state);
      const json = asMessageBody(body.json);
      checkMessage(json, body.files, state.attachmentSizeLimit, false);
      store.edit(stored, json, body.files);
      store.resolveLoading(stored);
      announceUpdate(core, stored);
      return ok(stored.message);
    },
    { auth: false },
  );
  router.add(
    'DELETE',
    messageRoute,
    ({ params }) => {
      const stored = webhookMessage(core, params);
      store.delete(stored);
      announceDelete(core, stored);
      return noContent();
    },
    { auth: false },
  );
}

function interactionCallback(core: EmulatorCore, { params, query, body }: RouteContext): RouteResult {
  const state = core.interactionsById.get(params.interactionId);
  if (!state || state.token !== params.token) throw errors.unknownInteraction();
  if (state.response) throw errors.alreadyAcknowledged();
  if (state.failed || core.clock.now() - state.createdAt > core.settings.interactionDeadlineMs) {
    // Past 3 s Discord has already shown "The application did not respond" and forgotten the token.
    state.failed = true;
    throw errors.unknownInteraction();
  }
  const response = (body.json ?? {}) as APIInteractionResponse;
  if (!allowedResponseTypes(state.type).includes(response.type)) {
    throw formError('type', 'INTERACTION_RESPONSE_TYPE_INVALID', `Value must be one of ${JSON.stringify(allowedResponseTypes(state.type))}.`);
  }
  const data = asMessageBody('data' in response ? response.data : undefined);
  let message: StoredMessage | undefined;
  switch (response.type) {
    case InteractionResponseType.ChannelMessageWithSource:
      checkMessage(data, body.files, state.attachmentSizeLimit, true);
      message = createInteractionMessage(core, state, data, body.files, false);
      state.originalMessageId = message.message.id;
      break;
    case InteractionResponseType.DeferredChannelMessageWithSource:
      // The "<bot> is thinking…" placeholder; only its ephemeral flag can be chosen now.
      message = createInteractionMessage(core, state, { content: '', flags: MessageFlags.Loading | ((data.flags ?? 0) & MessageFlags.Ephemeral) }, [], false);
      state.originalMessageId = message.message.id;
      break;
    case InteractionResponseType.DeferredMessageUpdate:
      message = core.store.get(componentMessageId(state));
      state.originalMessageId = componentMessageId(state);
      break;
    case InteractionResponseType.UpdateMessage: {
      checkMessage(data, body.files, state.attachmentSizeLimit, false);
      const target = core.store.get(componentMessageId(state));
      if (!target) throw errors.unknownMessage();
      message = core.store.edit(target, data, body.files);
      state.originalMessageId = target.message.id;
      announceUpdate(core, target);
      break;
    }
    default:
      break;
  }
  state.response = { type: response.type, at: core.clock.now() };
  if (message && response.type !== InteractionResponseType.DeferredMessageUpdate && response.type !== InteractionResponseType.UpdateMessage) {
    announceCreate(core, message);
  }
  if (query.get('with_response') !== 'true') return noContent();
  const result: RESTPostAPIInteractionCallbackWithResponseResult = {
    interaction: {
      id: state.id,
      type: state.type,
      ...(message
        ? {
            response_message_id: message.message.id,
            response_message_loading: Boolean((message.message.flags ?? 0) & MessageFlags.Loading),
            response_message_ephemeral: isEphemeral(message),
          }
        : {}),
    },
    ...(message ? { resource: { type: response.type, message: message.message } } : {}),
  };
  return ok(result);
}

function followUp(core: EmulatorCore, { params, query, body }: RouteContext): RouteResult {
  const state = requireWebhookInteraction(core, params);
  const data = asMessageBody(body.json);
  checkMessage(data, body.files, state.attachmentSizeLimit, true);
  const original = state.originalMessageId ? core.store.get(state.originalMessageId) : undefined;
  let stored: StoredMessage;
  if (original && (original.message.flags ?? 0) & MessageFlags.Loading) {
    // Discord turns the first follow-up after a defer into the deferred message itself.
    core.store.edit(original, data, body.files);
    core.store.resolveLoading(original);
    announceUpdate(core, original);
    stored = original;
  } else {
    stored = createInteractionMessage(core, state, data, body.files, true);
    state.followUpIds.push(stored.message.id);
    announceCreate(core, stored);
  }
  return query.get('wait') === 'true' ? ok(stored.message) : noContent();
}

function createInteractionMessage(core: EmulatorCore, state: InteractionState, data: MessageBody, files: UploadedFile[], isFollowUp: boolean): StoredMessage {
  const user = core.world.user(state.userId);
  const allowedFlags = MessageFlags.Ephemeral | MessageFlags.SuppressEmbeds | MessageFlags.SuppressNotifications | MessageFlags.Loading | MessageFlags.IsComponentsV2;
  return core.store.create({
    channelId: state.channelId,
    guildId: state.guildId,
    author: core.bot,
    body: { ...data, flags: (data.flags ?? 0) & allowedFlags },
    files,
    type: state.type === InteractionType.ApplicationCommand ? MessageType.ChatInputCommand : MessageType.Default,
    webhookId: core.applicationId,
    applicationId: core.applicationId,
    interactionId: state.id,
    extra: {
      interaction_metadata: state.payload.type === InteractionType.ApplicationCommand
        ? {
            id: state.id,
            type: InteractionType.ApplicationCommand,
            user,
            authorizing_integration_owners: state.payload.authorizing_integration_owners,
            ...(isFollowUp && state.originalMessageId ? { original_response_message_id: state.originalMessageId } : {}),
          }
        : {
            id: state.id,
            type: InteractionType.MessageComponent,
            user,
            authorizing_integration_owners: state.payload.authorizing_integration_owners,
            // Only a component's interaction gets here with a message (an autocomplete never creates one).
            interacted_message_id: state.payload.message?.id ?? state.id,
            ...(isFollowUp && state.originalMessageId ? { original_response_message_id: state.originalMessageId } : {}),
          },
    },
  });
}

/** The interaction behind a webhook URL, with Discord's answers for a wrong, expired or unanswered token. */
function requireWebhookInteraction(core: EmulatorCore, params: Record<string, string>): InteractionState {
  if (params.applicationId !== core.applicationId) throw errors.unknownWebhook();
  const state = core.interactionsByToken.get(params.token);
  if (!state) throw errors.invalidWebhookToken();
  // Discord answers an expired interaction token with 401 / 50027 "Invalid Webhook Token"
  // (discord/discord-api-docs#6851: 404 inside the 15 min window for a bad token, 401 after it;
  // discordjs/discord.js#8335 shows the 50027). Webhook routes carry no bot token, so discord.js
  // (auth: false) keeps its own token.
  if (tokenExpired(state, core.clock, core.settings.tokenLifetimeMs)) throw errors.invalidWebhookToken();
  if (!state.response || state.failed) throw errors.unknownWebhook();
  return state;
}

function webhookMessage(core: EmulatorCore, params: Record<string, string>, state = requireWebhookInteraction(core, params)): StoredMessage {
  const id = params.messageId === '@original' ? state.originalMessageId : params.messageId;
  const known = id !== undefined && (id === state.originalMessageId || state.followUpIds.includes(id));
  const stored = known ? core.store.get(id) : undefined;
  if (!stored) throw errors.unknownMessage();
  return stored;
}

function componentMessageId(state: InteractionState): string {
  const message = 'message' in state.payload ? state.payload.message : undefined;
  if (!message) throw errors.unknownMessage();
  return message.id;
}
