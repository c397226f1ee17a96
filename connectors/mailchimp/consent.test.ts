import { describe, expect, it } from 'vitest';
import { mailchimpConfigSchema, mailchimpConnector } from './index.js';

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

  it('an EEA audience without consent set fails its consent row, which refuses every run (test/sync/consent.test.ts)', () => {
    const row = mailchimpConnector.consent!(configOf({ eea: true }), 'mc')!.check;
    expect(row.ok).toBe(false);
    expect(row.detail).toContain(
      "destinations.mc.consent.email_marketing must be set for an EEA account (eea: true): 'granted' if every customer consented",
    );
    expect(mailchimpConnector.consent!(configOf(), 'mc')).toBeUndefined();
    expect(
      mailchimpConnector.consent!(configOf({ consent: { email_marketing: { column: 'newsletter' } } }), 'mc'),
    ).toEqual({
      check: { name: 'consent', ok: true, detail: "email_marketing from column 'newsletter'" },
      columns: [{ setting: 'destinations.mc.consent.email_marketing', column: 'newsletter' }],
    });
  });
});
