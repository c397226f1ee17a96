import { describe, expect, it } from 'vitest';
import { metaConfigSchema, metaConnector } from './index.js';

const configOf = (extra: Record<string, unknown> = {}) =>
  metaConfigSchema.parse({ type: 'meta', ad_account_id: '42', access_token: 't', ...extra });

describe('meta consent to ads', () => {
  it('keeps out anyone whose column does not grant it; unset grants everyone outside the EEA', () => {
    const config = configOf({ consent: { ads: { column: 'ads_ok' } } });
    const a = { email: 'a@example.com' };
    for (const yes of ['granted', ' YES ', 'true', '1', 'y'])
      expect('slots' in metaConnector.identify({ ...a, ads_ok: yes }, config), yes).toBe(true);
    for (const no of ['no', 'false', '0', '', 'denied'])
      expect(metaConnector.identify({ ...a, ads_ok: no }, config), no).toEqual({
        skip: 'consent not granted (ads)',
      });
    expect(metaConnector.identify(a, config)).toEqual({ skip: 'consent not granted (ads)' });
    // Someone Meta could not match anyway is counted for that, not for consent.
    expect(metaConnector.identify({ email: 'not-an-email', ads_ok: 'no' }, config)).toEqual({
      skip: 'invalid email',
    });
    expect('slots' in metaConnector.identify(a, configOf())).toBe(true);
    expect('slots' in metaConnector.identify(a, configOf({ consent: { ads: 'granted' } }))).toBe(true);
  });

  it("refuses 'denied' for everyone and an unknown key, naming the setting", () => {
    const denied = metaConfigSchema.safeParse({ ...configOf(), consent: { ads: 'denied' } });
    expect(denied.success).toBe(false);
    expect(JSON.stringify(denied.error?.issues.map((i) => i.path))).toContain('"consent","ads"');
    expect(metaConfigSchema.safeParse({ ...configOf(), consent: { ad: 'granted' } }).success).toBe(false);
  });

  it('an EEA account without consent set fails its consent row, which refuses every run; set, it is shown', () => {
    const message =
      "destinations.fb.consent.ads must be set for an EEA account (eea: true): 'granted' if every customer consented, or { column: <attribute> }";
    const refused = metaConnector.consent!(configOf({ eea: true }), 'fb')!;
    expect(refused.check).toEqual({
      name: 'consent',
      ok: false,
      detail: expect.stringContaining(message) as string,
    });
    expect(metaConnector.identify({ email: 'a@example.com' }, configOf({ eea: true }))).toEqual({
      skip: 'consent not granted (ads)',
    });
    const set = metaConnector.consent!(
      configOf({ eea: true, consent: { ads: { column: 'ads_ok' } } }),
      'fb',
    )!;
    expect(set).toEqual({
      check: { name: 'consent', ok: true, detail: "ads from column 'ads_ok' (EEA account)" },
      columns: [{ setting: 'destinations.fb.consent.ads', column: 'ads_ok' }],
    });
  });
});
