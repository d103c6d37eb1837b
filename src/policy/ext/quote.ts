// Extension literals come from policies and requests: echo only a bounded, escaped prefix of
// them in error messages.
const MAX_ECHOED_CHARS = 64;

export function quoteLiteral(text: string): string {
  const shown = text.length > MAX_ECHOED_CHARS ? `${text.slice(0, MAX_ECHOED_CHARS)}...` : text;
  return JSON.stringify(shown);
}
