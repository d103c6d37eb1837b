// An authorization request from JSON: `{principal, action, resource, context}`, uids as
// `{type, id}` or `{"__entity": {type, id}}`, context a record in Cedar's JSON value format.
import type { AuthzRequest } from './authorizer.js';
import { CedarJsonError, checkKeys, isJsonObject, recordFromJsonObject, uidFromJson } from './cedar-json.js';
import type { CedarJsonErrorCode, CedarJsonOptions } from './cedar-json.js';
import { JsonError, jsonFromValue, parseJson } from './json.js';
import type { JsonErrorCode, JsonLimits } from './json.js';
import { CedarRecord } from './value.js';
import { ZtedgeError } from '../errors.js';

export type RequestErrorCode = JsonErrorCode | CedarJsonErrorCode | 'REQUEST_SHAPE';

export class RequestError extends ZtedgeError<RequestErrorCode> {
  readonly path: string;
  readonly line: number | undefined;
  readonly column: number | undefined;

  constructor(code: RequestErrorCode, message: string, path: string, line?: number, column?: number) {
    super(code, message);
    this.path = path;
    this.line = line;
    this.column = column;
  }
}

export interface RequestOptions extends CedarJsonOptions, JsonLimits {}

// Requests arrive from outside on every command: much tighter bounds than a bundle's entities.
const REQUEST_LIMITS: Required<JsonLimits> = { maxLength: 1024 * 1024, maxDepth: 32, maxNodes: 100_000 };

/**
 * Reads a request from JSON text (read exactly) or an already parsed value. `context` may be
 * left out (an empty record); any other field is refused. Throws RequestError.
 */
export function requestFromJson(json: string | unknown, opts: RequestOptions = {}): AuthzRequest {
  const limits = { ...REQUEST_LIMITS, ...opts };
  try {
    const v = typeof json === 'string' ? parseJson(json, limits) : jsonFromValue(json, limits);
    const path: Array<string | number> = [];
    if (!isJsonObject(v)) throw new RequestError('REQUEST_SHAPE', 'a request must be a JSON object at $', '$');
    checkKeys(v, ['principal', 'action', 'resource'], ['context'], path, 'a request');
    const uid = (field: 'principal' | 'action' | 'resource') => {
      path.push(field);
      const u = uidFromJson(v.get(field)!, path);
      path.pop();
      return u;
    };
    const principal = uid('principal');
    const action = uid('action');
    const resource = uid('resource');
    const contextJson = v.get('context');
    path.push('context');
    const context =
      contextJson === undefined ? CedarRecord.EMPTY : recordFromJsonObject(contextJson, path, 'context', opts);
    return { principal, action, resource, context };
  } catch (e) {
    if (e instanceof JsonError) throw new RequestError(e.code, e.message, e.path, e.line, e.column);
    if (e instanceof CedarJsonError) {
      throw new RequestError(e.code === 'CEDAR_JSON_SHAPE' ? 'REQUEST_SHAPE' : e.code, e.message, e.path);
    }
    throw e;
  }
}
