// Raised by extension constructors and methods (bad literal, overflow). The evaluator turns it
// into a Cedar evaluation error of the policy being evaluated.
export class ExtensionError extends Error {
  override name = 'ExtensionError';
}
