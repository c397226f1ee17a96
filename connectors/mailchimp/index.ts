import type { ConnectorDefinition } from '../../src/connector.js';
import { MailchimpClient } from './client.js';
import { consentSettings } from '../../src/identify/consent.js';
import { consentCheck, mailchimpConfigSchema, membersPerCall, type MailchimpConfig } from './config.js';
import { HASHED_EMAIL, identify, SLOTS } from './identifiers.js';

/**
 * `mailchimp`: each audience is a tag (a static segment) on the contacts of one Mailchimp audience.
 * Mailchimp needs plaintext emails to tag: they travel with the members in memory (`plaintext: true`),
 * while the state keeps the subscriber hash, which is enough to untag someone who left the source.
 */

export { mailchimpConfigSchema, type MailchimpConfig } from './config.js';

export const mailchimpConnector: ConnectorDefinition<MailchimpConfig> = {
  type: 'mailchimp',
  configSchema: mailchimpConfigSchema,
  batchSize: membersPerCall,
  // Both the segment endpoint and a `/batches` job (waited for within the call) answer per member.
  final: () => true,
  // A tag's member count changes with the request.
  processingMinutes: () => 0,
  slots: () => SLOTS,
  plaintext: true,
  identify,
  skipReasons: [HASHED_EMAIL],
  consent: (config, destination) => {
    const row = consentCheck(destination, config);
    return row && consentSettings(destination, config, row);
  },
  create: (config, context) => new MailchimpClient(config, context),
};
