/**
 * An expected problem of the model library (a repo that does not exist, a gated repo without a token, a model
 * name already taken, a download cut or corrupted): one line for the owner, and the exit code the CLI uses.
 */
export class ModelsError extends Error {
  override readonly name = 'ModelsError';
  /**
   * @param exitCode 2: the command was used wrongly (usage); 1: it was right but could not be done.
   */
  constructor(
    message: string,
    readonly exitCode: 1 | 2 = 1,
  ) {
    super(message);
  }
}
