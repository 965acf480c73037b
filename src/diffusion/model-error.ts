/** Thrown when a folder is not a model imagine can run; the message names the file and what was expected. */
export class ModelLoadError extends Error {
  override readonly name = 'ModelLoadError';
}
