// The agent's version, read once from package.json (inlined by the bundler in a built binary),
// so the CLI, the status, bundle compatibility checks and attestation evidence agree.
import packageJson from '../package.json' with { type: 'json' };

export const AGENT_VERSION: string = packageJson.version;
