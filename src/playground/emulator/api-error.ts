import { RESTJSONErrorCodes } from 'discord-api-types/v10';

/** Discord's nested form-error tree: `{ content: { _errors: [{ code, message }] } }`. */
export interface FormErrors {
  [key: string]: FormErrors | { code: string; message: string }[];
}

/**
 * An error answered with Discord's JSON error body (`{ message, code, errors? }`).
 * Thrown from route handlers; the server turns it into the HTTP response.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: number,
    message: string,
    readonly errors?: FormErrors,
  ) {
    super(message);
  }

  get body(): { message: string; code: number; errors?: FormErrors } {
    return this.errors ? { message: this.message, code: this.code, errors: this.errors } : { message: this.message, code: this.code };
  }
}

/** One field error at a dotted path (`embeds.0.title`; `''` for the root), shaped like Discord's 50035 body. */
export function formError(path: string, code: string, message: string): ApiError {
  const errors: FormErrors = {};
  if (path === '') {
    errors._errors = [{ code, message }];
    return new ApiError(400, RESTJSONErrorCodes.InvalidFormBodyOrContentType, 'Invalid Form Body', errors);
  }
  let node: FormErrors = errors;
  const parts = path.split('.');
  for (const [i, part] of parts.entries()) {
    if (i === parts.length - 1) {
      node[part] = { _errors: [{ code, message }] };
    } else {
      const child: FormErrors = {};
      node[part] = child;
      node = child;
    }
  }
  return new ApiError(400, RESTJSONErrorCodes.InvalidFormBodyOrContentType, 'Invalid Form Body', errors);
}

// The messages below are Discord's own wording for these codes (discord.com/developers/docs/topics/opcodes-and-status-codes).
export const errors = {
  unauthorized: () => new ApiError(401, RESTJSONErrorCodes.GeneralError, '401: Unauthorized'),
  notFound: () => new ApiError(404, RESTJSONErrorCodes.GeneralError, '404: Not Found'),
  unknownChannel: () => new ApiError(404, RESTJSONErrorCodes.UnknownChannel, 'Unknown Channel'),
  unknownGuild: () => new ApiError(404, RESTJSONErrorCodes.UnknownGuild, 'Unknown Guild'),
  unknownMember: () => new ApiError(404, RESTJSONErrorCodes.UnknownMember, 'Unknown Member'),
  unknownMessage: () => new ApiError(404, RESTJSONErrorCodes.UnknownMessage, 'Unknown Message'),
  unknownUser: () => new ApiError(404, RESTJSONErrorCodes.UnknownUser, 'Unknown User'),
  unknownEmoji: () => new ApiError(400, RESTJSONErrorCodes.UnknownEmoji, 'Unknown Emoji'),
  unknownWebhook: () => new ApiError(404, RESTJSONErrorCodes.UnknownWebhook, 'Unknown Webhook'),
  unknownInteraction: () => new ApiError(404, RESTJSONErrorCodes.UnknownInteraction, 'Unknown interaction'),
  unknownCommand: () => new ApiError(404, RESTJSONErrorCodes.UnknownApplicationCommand, 'Unknown application command'),
  alreadyAcknowledged: () =>
    new ApiError(400, RESTJSONErrorCodes.InteractionHasAlreadyBeenAcknowledged, 'Interaction has already been acknowledged.'),
  invalidWebhookToken: () => new ApiError(401, RESTJSONErrorCodes.InvalidWebhookToken, 'Invalid Webhook Token'),
  emptyMessage: () => new ApiError(400, RESTJSONErrorCodes.CannotSendAnEmptyMessage, 'Cannot send an empty message'),
  tooLarge: () => new ApiError(413, RESTJSONErrorCodes.RequestEntityTooLarge, 'Request entity too large'),
  tooManyAttachments: () =>
    new ApiError(400, RESTJSONErrorCodes.MaximumNumberOfAttachmentsInAMessageReached, 'Maximum number of attachments in a message reached (10).'),
  invalidJson: () => new ApiError(400, RESTJSONErrorCodes.RequestBodyContainsInvalidJSON, 'The request body contains invalid JSON.'),
  missingPermissions: () => new ApiError(403, RESTJSONErrorCodes.MissingPermissions, 'Missing Permissions'),
  serverError: (status: number) => new ApiError(status, RESTJSONErrorCodes.GeneralError, `${status}: Internal Server Error`),
};
