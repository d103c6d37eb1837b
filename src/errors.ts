// One error base for the whole agent: every error that crosses a module boundary carries a
// stable UPPER_SNAKE code, typed per module, so the CLI, the HTTP API and the audit log map any
// of them with one `instanceof` and never parse a message.
export class ZtedgeError<Code extends string = string> extends Error {
  constructor(
    readonly code: Code,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  override get name(): string {
    return this.constructor.name;
  }
}
