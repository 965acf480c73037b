/**
 * The U and V buttons under a finished job's pictures: row one U1…Un (a 2× upscale of picture i), row two V1…Vn
 * (variations of it). Their custom ids name only the job and the picture (jobs/picture-actions.ts); what a press
 * does is decided when it arrives, from the journal.
 */
import { ButtonStyle, ComponentType, type APIActionRowComponent, type APIButtonComponent } from 'discord-api-types/v10';
import { BUTTON_LIMITS, pictureButtonId, pictureButtonLabel, type PictureAction } from '../jobs/picture-actions.js';

export type ButtonRow = APIActionRowComponent<APIButtonComponent>;

/**
 * The rows of buttons for `pictures` pictures of job `jobId`, `actions` in this order (each its own rows, five
 * buttons a row; a single picture's buttons share one row). Empty for no actions.
 * @throws Error when they would pass Discord's limits (more than 5 rows, or a custom id over 100 characters).
 */
export function pictureButtonRows(jobId: string, pictures: number, actions: readonly PictureAction[] = ['upscale', 'variation']): ButtonRow[] {
  const rows: ButtonRow[] = [];
  for (const action of actions) {
    for (let first = 0; first < pictures; first += BUTTON_LIMITS.perRow) {
      const components: APIButtonComponent[] = [];
      for (let picture = first; picture < Math.min(pictures, first + BUTTON_LIMITS.perRow); picture++) {
        const customId = pictureButtonId({ action, jobId, picture });
        if (customId.length > BUTTON_LIMITS.customIdLength) {
          throw new Error(`Expected a button custom id of at most ${BUTTON_LIMITS.customIdLength} characters, got ${customId.length}`);
        }
        components.push({
          type: ComponentType.Button,
          style: action === 'upscale' ? ButtonStyle.Secondary : ButtonStyle.Primary,
          label: pictureButtonLabel({ action, picture }),
          custom_id: customId,
        });
      }
      rows.push({ type: ComponentType.ActionRow, components });
    }
  }
  if (pictures === 1 && rows.length > 1) return [{ type: ComponentType.ActionRow, components: rows.flatMap((row) => row.components) }];
  if (rows.length > BUTTON_LIMITS.rows) {
    throw new Error(`Expected at most ${BUTTON_LIMITS.rows} rows of buttons on a message, got ${rows.length} for ${pictures} pictures`);
  }
  return rows;
}
