// Raised by extension constructors and methods (bad literal, overflow). The evaluator turns it
// into a Cedar evaluation error of the policy being evaluated.
import { ZtedgeError } from '../../errors.js';

export class ExtensionError extends ZtedgeError<'EXTENSION_INVALID'> {
  constructor(message: string) {
    super('EXTENSION_INVALID', message);
  }
}
