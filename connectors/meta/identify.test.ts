import nock from 'nock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { ConnectorError } from '../../src/connector.js';
import { metaConfigSchema, metaConnector } from './index.js';

const log = createLogger({ level: 'silent', json: true });
const configOf = (extra: Record<string, unknown> = {}) =>
  metaConfigSchema.parse({ type: 'meta', ad_account_id: '42', access_token: 't', ...extra });

beforeEach(() => nock.disableNetConnect());
afterEach(() => nock.enableNetConnect());

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

  it('an EEA account without consent set fails check and every run before a request; set, it is shown', async () => {
    const client = metaConnector.create(configOf({ eea: true }), { destination: 'fb', baseDir: '.', log });
    const message =
      "destinations.fb.consent.ads must be set for an EEA account (eea: true): 'granted' if every customer consented, or { column: <attribute> }";
    // No Graph API is faked: a request would fail with another message.
    const error = await client.ensureAudience('Champions').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConnectorError);
    expect((error as ConnectorError).message).toContain(message);
    expect((error as ConnectorError).kind).toBe('permanent');
    const [refused] = await client.check();
    expect(refused).toEqual({
      name: 'consent',
      ok: false,
      detail: expect.stringContaining(message) as string,
    });
    expect(metaConnector.identify({ email: 'a@example.com' }, configOf({ eea: true }))).toEqual({
      skip: 'consent not granted (ads)',
    });

    const set = metaConnector.create(configOf({ eea: true, consent: { ads: { column: 'ads_ok' } } }), {
      destination: 'fb',
      baseDir: '.',
      log,
    });
    // The network is off: the other checks fail, the consent row is still there, first.
    const checks = await set.check();
    expect(checks[0]).toEqual({
      name: 'consent',
      ok: true,
      detail: "ads from column 'ads_ok' (EEA account)",
    });
  });
});
