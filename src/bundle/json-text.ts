// Writes a lossless JSON value (from the policy engine's exact reader) back to compact JSON text,
// integers and decimal numbers exactly as read. Bundles carry Cedar JSON as text so that
// integers beyond 2^53 reach the device intact.
import { JsonNumber, type JsonValue } from '../policy/index.js';

export function jsonText(value: JsonValue): string {
  if (value === null) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'string') return JSON.stringify(value);
  if (value instanceof JsonNumber) return value.text;
  if (Array.isArray(value)) return `[${value.map(jsonText).join(',')}]`;
  return `{${[...value].map(([key, item]) => `${JSON.stringify(key)}:${jsonText(item)}`).join(',')}}`;
}
