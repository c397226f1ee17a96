import type { ConnectorDefinition } from '../../src/connector.js';
import { createAdsApiClient } from './adsapi.js';
import { consentSettings } from '../../src/identify/consent.js';
import { consentCheck, googleAdsConfigSchema, type GoogleAdsConfig } from './config.js';
import { createDataManagerClient } from './datamanager.js';
import { identify } from './identify.js';
import { IDENTIFIER_GROUPS, INCOMPLETE_ADDRESS, SLOTS } from './identifiers.js';

/**
 * `google_ads`: each audience is a Customer Match user list, uploaded through the Data Manager API (the
 * default) or, for developer tokens Google still allows, the Google Ads API (`api: ads_api`).
 */

export const googleAdsConnector: ConnectorDefinition<GoogleAdsConfig> = {
  type: 'google_ads',
  configSchema: googleAdsConfigSchema,
  // A batch is one request on the Data Manager path, one job (of several requests) on the Google Ads API path.
  batchSize: (config) => (config.api === 'ads_api' ? config.job_members : config.batch_size),
  // Google processes uploads for 10 minutes to 24 hours: batches stay pending until polled done.
  final: () => false,
  // Google sizes a list within hours, at most a day after an upload.
  processingMinutes: () => 24 * 60,
  sizeRules: () => ({
    minMembers: 100,
    why: 'Google serves a Customer Match list from 100 members',
  }),
  slots: () => SLOTS,
  identifierGroups: () => IDENTIFIER_GROUPS,
  identify,
  identifiers: 'google-ads/identify.js',
  skipReasons: [INCOMPLETE_ADDRESS],
  consent: (config, destination) => consentSettings(destination, config, consentCheck(destination, config)),
  create: (config, context) =>
    config.api === 'ads_api' ? createAdsApiClient(config, context) : createDataManagerClient(config, context),
};
