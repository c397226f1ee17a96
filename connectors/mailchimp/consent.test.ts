import { describe, expect, it } from 'vitest';
import { ConnectorError } from '../../src/connector.js';
import { createLogger } from '../../src/log.js';
import { mailchimpConfigSchema, mailchimpConnector } from './index.js';

const log = createLogger({ level: 'silent', json: true });
const configOf = (extra: Record<string, unknown> = {}) =>
  mailchimpConfigSchema.parse({ type: 'mailchimp', api_key: 'abc-us21', list_id: 'a1b2c3', ...extra });

describe('mailchimp consent to marketing e-mail', () => {
  it('keeps out anyone whose column does not grant it; unset grants everyone outside the EEA', () => {
    const config = configOf({ consent: { email_marketing: { column: 'newsletter' } } });
    const a = { email: 'a@example.com' };
    expect('slots' in mailchimpConnector.identify({ ...a, newsletter: 'Yes' }, config)).toBe(true);
    expect(mailchimpConnector.identify({ ...a, newsletter: 'no' }, config)).toEqual({
      skip: 'consent not granted (email marketing)',
    });
    expect(mailchimpConnector.identify(a, config)).toEqual({ skip: 'consent not granted (email marketing)' });
    expect(mailchimpConnector.identify({ email: '', newsletter: 'no' }, config)).toEqual({
      skip: 'no usable identifier',
    });
    expect('slots' in mailchimpConnector.identify(a, configOf())).toBe(true);
    expect(mailchimpConnector.identify(a, configOf({ eea: true }))).toEqual({
      skip: 'consent not granted (email marketing)',
    });
  });

  it('an EEA audience without consent set fails check and every run before a request', async () => {
    const client = mailchimpConnector.create(configOf({ eea: true }), {
      destination: 'mc',
      baseDir: '.',
      log,
    });
    const error = await client.ensureAudience('Champions').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConnectorError);
    expect((error as ConnectorError).message).toContain(
      "destinations.mc.consent.email_marketing must be set for an EEA account (eea: true): 'granted' if every customer consented",
    );
  });
});
