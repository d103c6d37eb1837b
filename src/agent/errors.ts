// Failures of the agent's lifecycle, each with a stable code.
import { ZtedgeError } from '../errors.js';

export type AgentErrorCode =
  /** Another process holds the state directory (a second `ztedge run`, or a CLI command on it). */
  | 'STATE_DIR_LOCKED'
  /** The state directory is not one the agent has written (a CLI command was pointed elsewhere). */
  | 'STATE_DIR_INVALID'
  | 'AGENT_START_FAILED'
  | 'AGENT_STOP_FAILED';

export class AgentError extends ZtedgeError<AgentErrorCode> {}
