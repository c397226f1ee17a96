import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { ConnectorError } from '../../src/connector.js';
import { createLogger } from '../../src/log.js';
import { forgetSecrets, redact, redactValue, registerSecret } from '../../src/redact.js';

/** The one redaction step: registered secrets in every form, credentials by their place, and its users. */

const REFRESH = '1//0gUnitRefresh5Token8Xy2Zw4Vb7Nm';
const KEY = 'UnitApiKey3Qe6Rt9Yu2Io';

afterEach(() => forgetSecrets());

describe('redact', () => {
  it('takes a registered secret out in every form a platform echoes it', () => {
    registerSecret(REFRESH);
    const forms = [
      REFRESH,
      '1%2F%2F0gUnitRefresh5Token8Xy2Zw4Vb7Nm', // encodeURIComponent, form bodies
      '1%2f%2f0gUnitRefresh5Token8Xy2Zw4Vb7Nm', // lower-case hex
      '1%252F%252F0gUnitRefresh5Token8Xy2Zw4Vb7Nm', // encoded twice
      '1\\/\\/0gUnitRefresh5Token8Xy2Zw4Vb7Nm', // JSON with escaped slashes
      '1\\u002f\\u002F0gUnitRefresh5Token8Xy2Zw4Vb7Nm', // JSON \u escapes
      '1\\\\\\/\\\\\\/0gUnitRefresh5Token8Xy2Zw4Vb7Nm', // JSON inside JSON
    ];
    for (const form of forms) expect(redact(`before ${form} after`)).toBe('before [redacted] after');
  });

  it('leaves words alone: short secrets only where they stand alone, very short ones not at all', () => {
    registerSecret('s3cr');
    registerSecret('abc');
    expect(redact('s3cr, xs3cr, s3crx, client_s3cr')).toBe('[redacted], xs3cr, s3crx, client_s3cr');
    expect(redact('abc')).toBe('abc');
  });

  it('finds credentials by their place, whatever their value', () => {
    const cases: [string, string][] = [
      [
        'grant_type=refresh_token&client_id=42.apps&client_secret=GOCSPX-x1&refresh_token=1%2F%2Fab&scope=a',
        'grant_type=refresh_token&client_id=42.apps&client_secret=[redacted]&refresh_token=[redacted]&scope=a',
      ],
      [
        'https://x.test/v1/me?fields=id&access_token=EAB1&limit=5',
        'https://x.test/v1/me?fields=id&access_token=[redacted]&limit=5',
      ],
      ['GET /maps?key=AIzaXYZ123 HTTP/1.1', 'GET /maps?key=[redacted] HTTP/1.1'],
      ['{"client_secret":"a\\"b","n":1}', '{"client_secret":"[redacted]","n":1}'],
      ['{\\"refresh_token\\":\\"xyz\\"}', '{\\"refresh_token\\":\\"[redacted]\\"}'],
      ["{ api_key: 'k-1', password: 'p w' }", "{ api_key: '[redacted]', password: '[redacted]' }"],
      ['Authorization: Bearer abc.def-1, next', 'Authorization: [redacted], next'],
      ['developer-token: Dev123; login-customer-id: 1', 'developer-token: [redacted]; login-customer-id: 1'],
      ['sent Bearer ya9.AbC-12 and Basic dXNlcjprZXk=', 'sent Bearer [redacted] and Basic [redacted]'],
      ['redis://default:p%40ss@cache:6379/0', 'redis://default:[redacted]@cache:6379/0'],
      ['token ya29.a0AfH6SMB-x_y and 1//09abcdefghijklmnopqrstu', 'token [redacted] and [redacted]'],
      ['GOCSPX-AbCdEf123456_x and EAAGm0PX4ZCpsBAKZBZCxyz123456', '[redacted] and [redacted]'],
      ['key 0123456789abcdef0123456789abcdef-us21 used', 'key [redacted] used'],
    ];
    for (const [text, expected] of cases) expect(redact(text)).toBe(expected);
  });

  it('keeps our own messages as they are: they name the setting to fix', () => {
    const messages = [
      'Check client_id and client_secret (GOOGLE_CLIENT_ID / GOOGLE_CLIENT_SECRET): they must be the OAuth client',
      'check client_id, client_secret, refresh_token and endpoints.token_url',
      'the developer token has test-account access only: apply for Basic or Standard access in the API Center',
      'The access token was refused: check the refresh token (GOOGLE_REFRESH_TOKEN), the OAuth client',
      'Bearer authentication failed; set META_ACCESS_TOKEN',
      'check MAILCHIMP_API_KEY — the whole key, with its data-centre suffix (-us21, so https://us21.api.mailchimp.com/3.0)',
      'cannot reach Redis at redis://127.0.0.1:6379 (REDIS_URL is not set)',
      'authorization_error.USER_PERMISSION_DENIED: set login_customer_id',
    ];
    for (const m of messages) expect(redact(m)).toBe(m);
  });

  it('keeps a JSON log line valid JSON', () => {
    registerSecret(REFRESH);
    const line = JSON.stringify({
      msg: `refused: client_secret=abc&refresh_token=${encodeURIComponent(REFRESH)}`,
      err: {
        body: JSON.stringify({ refresh_token: REFRESH, error: 'x' }),
        url: `https://u:pw@h/?key=${KEY}`,
      },
    });
    const out = redact(line);
    expect(out).not.toContain('UnitRefresh');
    expect(out).not.toContain(KEY);
    expect(JSON.parse(out)).toEqual({
      msg: 'refused: client_secret=[redacted]&refresh_token=[redacted]',
      err: {
        body: '{"refresh_token":"[redacted]","error":"x"}',
        url: 'https://u:[redacted]@h/?key=[redacted]',
      },
    });
  });

  it('copies values deeply, and errors without their other properties', () => {
    registerSecret(KEY);
    const sdkError = Object.assign(new Error(`401 for ${KEY}`), {
      response: {
        req: {
          _header: `GET / HTTP/1.1\r\nAuthorization: Basic ${Buffer.from(`u:${KEY}`).toString('base64')}`,
        },
      },
    });
    const copy = redactValue({ status: 401, text: `key ${KEY}`, list: [KEY, 2], error: sdkError }) as Record<
      string,
      unknown
    >;
    expect(copy).toEqual({
      status: 401,
      text: 'key [redacted]',
      list: ['[redacted]', 2],
      error: expect.any(Error),
    });
    const error = copy.error as Error & { response?: unknown };
    expect(error.message).toBe('401 for [redacted]');
    expect(error.stack).not.toContain(KEY);
    expect(error.response).toBeUndefined();
  });
});

describe('where platform text enters', () => {
  it('ConnectorError redacts its message, stack, hint and cause', () => {
    registerSecret(KEY);
    const error = new ConnectorError(`Mailchimp said: bad key ${KEY}`, 'permanent', {
      hint: `key ${KEY}`,
      cause: new Error(`request with ${KEY}`),
    });
    expect(error.message).toBe('Mailchimp said: bad key [redacted]');
    expect(error.stack).toContain('Mailchimp said: bad key [redacted]');
    expect(error.stack).not.toContain(KEY);
    expect(error.options.hint).toBe('key [redacted]');
    expect((error.cause as Error).message).toBe('request with [redacted]');
    expect(error.options.cause).toBe(error.cause);
  });

  it('the logger redacts every line, raw SDK errors included, in JSON and for a terminal', () => {
    registerSecret(KEY);
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const log = createLogger({ level: 'debug', json: true, stream });
    const sdkError = Object.assign(new Error(`failed: ${KEY}`), {
      response: {
        req: { _header: `Authorization: Basic ${Buffer.from(`anystring:${KEY}`).toString('base64')}` },
      },
      url: `https://graph.test/me?access_token=${KEY}`,
    });
    log.error({ err: sdkError, note: `the key is ${KEY}` }, `call failed with ${encodeURIComponent(KEY)}`);
    expect(lines).toHaveLength(1);
    const text = lines.join('');
    expect(text).not.toContain(KEY);
    expect(text).not.toContain(Buffer.from(`anystring:${KEY}`).toString('base64'));
    const entry = JSON.parse(text) as { msg: string; note: string; err: { url: string; message: string } };
    expect(entry.msg).toBe('call failed with [redacted]');
    expect(entry.note).toBe('the key is [redacted]');
    expect(entry.err.url).toBe('https://graph.test/me?access_token=[redacted]');
  });

  it('the config loader registers every credential it takes from the environment', () => {
    const env = {
      GOOGLE_CLIENT_SECRET: 'LoaderClientSecret4Gh7',
      GOOGLE_REFRESH_TOKEN: '1//LoaderRefresh8Jk2',
      DATABASE_URL: 'postgres://shop:Loader%2FPass9@db:5432/shop',
      REDIS_URL: 'redis://:LoaderRedis3Pw@cache:6379',
      REDIS_CLUSTER_NODES: 'redis://app:LoaderNode5Pw@n1:7000, n2:7001',
      REDIS_SENTINELS: 's1:26379,redis://:LoaderWatch6Pw@s2:26379',
    };
    parseConfig(
      `source: { type: postgres, url: "\${DATABASE_URL}", query: "select 1" }
destinations:
  google:
    type: google_ads
    customer_id: 123-456-7890
    client_id: x.apps.googleusercontent.com
    client_secret: \${GOOGLE_CLIENT_SECRET}
    refresh_token: \${GOOGLE_REFRESH_TOKEN}
`,
      'audience-sync.yaml',
      env,
    );
    expect(
      redact(
        'LoaderClientSecret4Gh7 1//LoaderRefresh8Jk2 Loader/Pass9 Loader%2FPass9 LoaderRedis3Pw LoaderNode5Pw LoaderWatch6Pw',
      ),
    ).toBe('[redacted] [redacted] [redacted] [redacted] [redacted] [redacted] [redacted]');
    // Values of other keys are not secrets.
    expect(redact('x.apps.googleusercontent.com shop db')).toBe('x.apps.googleusercontent.com shop db');
  });
});
