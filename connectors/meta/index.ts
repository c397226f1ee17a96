import type { ConnectorDefinition } from '../../src/connector.js';
import { MetaClient } from './client.js';
import { consentSettings } from '../../src/identify/consent.js';
import { consentCheck, metaConfigSchema, type MetaConfig } from './config.js';
import { identifierGroups, TOO_LONG } from './identifiers.js';
import { identify } from './identify.js';
import { versionNotice } from './versions.js';

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
  // Meta delivers to a custom audience of about 100 matched people or more; smaller ones refuse removals too.
  sizeRules: () => ({
    removalFloor: 100,
    why: 'Meta delivers ads to a custom audience from about 100 people',
  }),
  apiVersionNotice: (config, now) => {
    // The schema gives the newest version this release knows when none is set.
    const notice = versionNotice(config.api_version, now);
    return notice && { version: config.api_version, ...notice };
  },
  slots: (config) => config.schema,
  identifierGroups: (config) => identifierGroups(config.schema),
  identify,
  identifiers: 'meta/identify.js',
  skipReasons: [TOO_LONG],
  consent: (config, destination) => {
    const row = consentCheck(destination, config);
    return row && consentSettings(destination, config, row);
  },
  create: (config, context) =>
    new MetaClient(config, context.log.child({ destination: context.destination })),
};
