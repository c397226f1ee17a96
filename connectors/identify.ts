import type { Identified, Person } from '../src/identity/types.js';
import { identify as fileIdentify } from './file/index.js';
import { identify as googleAdsIdentify } from './google-ads/identify.js';
import { identify as metaIdentify } from './meta/identify.js';

/**
 * The identifier rules of the built-in connectors, without their clients: what the identify threads
 * load (a thread that imported the registry would load every platform's SDK). Mailchimp is not here:
 * it needs plaintext, which stays on the main thread.
 */
export const identifiers: Readonly<Record<string, (person: Person, config: never) => Identified>> = {
  file: fileIdentify,
  google_ads: googleAdsIdentify,
  meta: metaIdentify,
};
