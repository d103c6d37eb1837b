// `ztedge config`: check a configuration file as `ztedge run` would read it, print an example
// file, or print the option reference (the README's table).
import { checkConfigFiles, readAgentConfig } from '../agent/config-file.js';
import { ConfigError, envOverrides } from '../agent/config.js';
import { exampleConfig, referenceTable } from '../agent/config-options.js';
import { defineGroup } from './command.js';

const CHECK_USAGE = `Usage: ztedge config check FILE

Reads FILE as \`ztedge run --config FILE\` would (with the ZTEDGE_* variables of this
environment over it), and checks the files it names: the device key (a private key, mode 0600),
the root keys, the broker's password and TLS files, the admin token file. Prints a summary and
exits 0, or lists every problem (CONFIG_INVALID) and exits 2.`;

const EXAMPLE_USAGE = `Usage: ztedge config example

Prints a configuration file with every option: required ones with example values, the others
commented out at their defaults. Paths in it are relative to the file.`;

const REFERENCE_USAGE = `Usage: ztedge config reference

Prints the option reference as a Markdown table: path, type, default, environment variable.`;

export const configCommand = defineGroup({
  name: 'config',
  summary: 'check an agent configuration file, or print an example and the option reference',
  commands: [
    {
      name: 'check',
      summary: 'check a configuration file (and the files it names) as ztedge run would',
      usage: CHECK_USAGE,
      options: {},
      positionals: { min: 1, max: 1, name: 'FILE' },
      run: (parsed, io) => {
        const file = parsed.positionals[0]!;
        const config = readAgentConfig(file, process.env);
        const problems = checkConfigFiles(config);
        if (problems.length > 0) throw new ConfigError(problems);
        const executors = Object.keys(config.executors);
        const overrides = envOverrides(process.env);
        io.stdout(
          [
            `${file}: ok`,
            `  device ${config.device.id} at site ${config.device.site} (profile ${config.device.profile})`,
            `  state directory ${config.stateDir}`,
            `  bundles signed by ${config.roots.threshold} of ${config.roots.keys.length} root key${config.roots.keys.length === 1 ? '' : 's'}`,
            `  broker ${config.broker.url ?? 'none'}; local API ${config.http.enabled ? `${config.http.host}:${config.http.port}` : 'off'}${config.http.adminTokenFile === undefined ? '' : ' (admin token set)'}`,
            `  executors: ${executors.length === 0 ? 'none (allowed commands are not executed)' : executors.join(', ')}`,
            ...(overrides.length === 0 ? [] : [`  from the environment: ${overrides.join(', ')}`]),
          ].join('\n'),
        );
        return 0;
      },
    },
    {
      name: 'example',
      summary: 'print an example configuration file with every option',
      usage: EXAMPLE_USAGE,
      options: {},
      run: (_parsed, io) => {
        io.stdout(exampleConfig());
        return 0;
      },
    },
    {
      name: 'reference',
      summary: 'print the option reference (Markdown)',
      usage: REFERENCE_USAGE,
      options: {},
      run: (_parsed, io) => {
        io.stdout(referenceTable());
        return 0;
      },
    },
  ],
});
