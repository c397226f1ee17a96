import type { ConnectorDefinition } from '../src/connector.js';
import { fileConnector } from './file/index.js';
import { googleAdsConnector } from './google-ads/index.js';
import { mailchimpConnector } from './mailchimp/index.js';
import { metaConnector } from './meta/index.js';

/** The worker-thread script that identifies customers with a connector's `identifiers` (see src/identify/pool.ts). */
export const identifyThread = new URL('./identify-thread.js', import.meta.url);

/** Every built-in connector by its `type`. A new platform is one folder and one line here. */
export const connectors: Readonly<Record<string, ConnectorDefinition>> = {
  file: fileConnector,
  google_ads: googleAdsConnector,
  meta: metaConnector,
  mailchimp: mailchimpConnector,
};
