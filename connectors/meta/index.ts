import type { ConnectorDefinition } from '../../src/connector.js';
import { MetaClient } from './client.js';
import { metaConfigSchema, type MetaConfig } from './config.js';
import { identifierGroups, identifyMember } from './identifiers.js';

/**
 * `meta`: each audience is a customer-list custom audience in a Meta ad account (Facebook and
 * Instagram). Members are rows of the configured schema's keys, hashed per Meta's rules; a full resync
 * replaces the audience through `/usersreplace`. Meta's answer to an upload is its acceptance, so
 * results are final when a request returns (Meta then matches people within 24 hours).
 */

export { metaConfigSchema, type MetaConfig };

export const metaConnector: ConnectorDefinition<MetaConfig> = {
  type: 'meta',
  configSchema: metaConfigSchema,
  batchSize: (config) => config.batch_size,
  final: () => true,
  // Meta's approximate count follows an upload within about an hour.
  processingMinutes: () => 60,
  concurrency: (config) => config.requests_in_flight,
  slots: (config) => config.schema,
  identifierGroups: (config) => identifierGroups(config.schema),
  identify: identifyMember,
  create: (config, context) =>
    new MetaClient(config, context.log.child({ destination: context.destination })),
};
