import { audiencesOf, type AudienceSpec } from '../audience/audiences.js';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import type { ConnectorDefinition } from '../connector.js';
import { ConfigError } from '../errors.js';
import { removalBrake } from '../diff/brakes.js';
import { segmentCustomers, type Segmented } from '../score/pipeline.js';
import type { ReadOptions } from '../source/read.js';
import { syncDestination, type AudienceResult, type Destination, type SyncOptions } from './run.js';

export type ConnectorRegistry = Readonly<Record<string, ConnectorDefinition>>;

/** Checks each destination's settings with its connector's schema, naming the exact key. */
export function destinationsOf(config: Config, connectors: ConnectorRegistry, only?: string): Destination[] {
  const names = Object.keys(config.destinations);
  if (only !== undefined && !names.includes(only))
    throw new ConfigError(
      `no destination named '${only}'`,
      `destinations are: ${names.join(', ') || 'none (add one under destinations:)'}`,
    );
  if (names.length === 0)
    throw new ConfigError(
      'the config has no destinations',
      'add one under destinations: (type: file writes audiences to a folder)',
    );
  return names
    .filter((name) => only === undefined || name === only)
    .map((name) => {
      const raw = config.destinations[name]!;
      const connector = connectors[raw.type];
      if (!connector)
        throw new ConfigError(
          `destinations.${name}.type: the ${raw.type} connector is not available in this version`,
          `available: ${Object.keys(connectors).join(', ')}`,
        );
      const parsed = connector.configSchema.safeParse(raw);
      if (!parsed.success)
        throw new ConfigError(
          parsed.error.issues.map((i) => `destinations.${name}.${i.path.join('.')}: ${i.message}`).join('\n'),
          'see the connector README under connectors/',
        );
      const destination = { name, connector, config: parsed.data };
      consentColumnsIn(config, destination);
      return destination;
    });
}

/** Consent read from a column the source does not keep would count everyone as withdrawn: refused. */
function consentColumnsIn(config: Config, destination: Destination): void {
  const attributes = [...config.source.attributes, ...(config.profiles?.attributes ?? [])];
  const consent = destination.connector.consent?.(destination.config, destination.name);
  for (const { setting, column } of consent?.columns ?? [])
    if (!attributes.includes(column))
      throw new ConfigError(
        `${setting} reads column '${column}', which is not among the source's attributes (${attributes.join(', ') || 'none'})`,
        `list '${column}' under ${config.profiles ? 'profiles.attributes' : 'source.attributes'}, or correct the column's name`,
      );
}

export interface Prepared {
  config: Config;
  baseDir: string;
  destinations: Destination[];
  segmented: Segmented;
  audiences: AudienceSpec[];
}

/** Config → destinations → segments → audiences: what a sync of some destinations needs. */
export async function prepareSync(
  configFile: string,
  connectors: ConnectorRegistry,
  options: {
    destination?: string | undefined;
    audience?: string | undefined;
    onProgress?: ReadOptions['onProgress'];
    onCustomers?: ReadOptions['onCustomers'];
    /** Reads and scores the source instead (a worker's read shared between runs: `SharedReads`). */
    score?: (config: Config, baseDir: string) => Promise<Segmented>;
  } = {},
): Promise<Prepared> {
  const { config, dir } = loadConfig(configFile);
  const destinations = destinationsOf(config, connectors, options.destination);
  // Too many bad rows stop here, before anything is sent anywhere.
  const segmented = options.score
    ? await options.score(config, dir)
    : await segmentCustomers(config, {
        baseDir: dir,
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
        ...(options.onCustomers ? { onCustomers: options.onCustomers } : {}),
      });
  const audiences = audiencesOf(config, segmented.scores.segments);
  if (options.audience !== undefined && !audiences.some((a) => a.name === options.audience))
    throw new ConfigError(
      `no audience named '${options.audience}'`,
      `audiences are: ${audiences.map((a) => a.name).join(', ')}`,
    );
  return { config, baseDir: dir, destinations, segmented, audiences };
}

/** Syncs the prepared config's (first) destination: a client, the run, the client closed. */
export async function syncPrepared(
  prepared: Prepared,
  options: Omit<SyncOptions, 'segmented' | 'audiences'>,
): Promise<AudienceResult[]> {
  const destination = prepared.destinations[0]!;
  const client = destination.connector.create(destination.config, {
    destination: destination.name,
    baseDir: prepared.baseDir,
    log: options.log,
  });
  try {
    return await syncDestination(destination, client, {
      removals: removalBrake(prepared.config.sync),
      ...options,
      segmented: prepared.segmented,
      audiences: prepared.audiences,
    });
  } finally {
    await client.close?.();
  }
}
