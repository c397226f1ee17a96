import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

const parse = (yaml: string, env: NodeJS.ProcessEnv = {}) => parseConfig(yaml, 'test.yaml', env);
const errorOf = (yaml: string, env: NodeJS.ProcessEnv = {}): string => {
  try {
    parse(yaml, env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).exitCode).toBe(2);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
};

describe('config', () => {
  it('ships a working example', () => {
    const { config } = loadConfig(path.resolve('config/example.yaml'));
    expect(config.source.type).toBe('csv');
    expect(config.scoring.method).toBe('quantile');
    expect(config.profiles?.attributes).toEqual(['favorite_brand']);
  });

  it('fills defaults for a minimal config', () => {
    const config = parse('source: { type: csv, path: orders.csv }');
    expect(config.scoring).toMatchObject({ analysis_date: 'today', method: 'quantile', monetary: 'sum' });
    expect(config.source).toMatchObject({ max_bad_row_share: 0.01, date_format: 'auto' });
    expect(config.segments.map).toBe('default');
    expect(config.audiences.name_pattern).toBe('RFM: {segment}');
  });

  it('rejects unknown keys with their path, line and the nearest allowed key', () => {
    const message = errorOf('source:\n  type: csv\n  path: a.csv\nscoring:\n  methd: ntile\n');
    expect(message).toContain("test.yaml:5: scoring.methd: unknown key; did you mean 'method'?");
  });

  it('rejects wrong types and values with the exact path', () => {
    expect(errorOf('source: { type: csv, path: a.csv, max_bad_row_share: lots }')).toMatch(
      /source\.max_bad_row_share: expected number, got string "lots"/,
    );
    expect(errorOf('source: { type: csv, path: a.csv }\nscoring: { method: median }')).toMatch(
      /scoring\.method: expected one of "quantile", "ntile", got string "median"/,
    );
    expect(errorOf('source: { type: ftp, path: a.csv }')).toMatch(/source\.type/);
    expect(errorOf('source: { type: csv }')).toMatch(/source\.path: required/);
    expect(errorOf('source: { type: csv, path: a.csv }\nscoring: { analysis_date: 2026-02-30 }')).toMatch(
      /scoring\.analysis_date/,
    );
  });

  it('takes the console time zone as an IANA name, UTC by default, and names the setting when it is not one', () => {
    expect(parse('source: { type: csv, path: a.csv }').console.time_zone).toBe('UTC');
    expect(
      parse('source: { type: csv, path: a.csv }\nconsole: { time_zone: Asia/Kathmandu }').console.time_zone,
    ).toBe('Asia/Kathmandu');
    expect(errorOf('source: { type: csv, path: a.csv }\nconsole:\n  time_zone: Berlin\n')).toMatch(
      /test\.yaml:3: console\.time_zone: 'Berlin' is not a time zone; use an IANA name such as Europe\/Berlin/,
    );
  });

  it('takes values from the environment', () => {
    const config = parse('source: { type: postgres, url: "${DATABASE_URL}", query: "select 1" }', {
      DATABASE_URL: 'postgres://u:p@db/x',
    });
    expect(config.source.type === 'postgres' && config.source.url).toBe('postgres://u:p@db/x');
    expect(parse('source: { type: csv, path: "${DATA:-orders.csv}" }').source).toMatchObject({
      path: 'orders.csv',
    });
    expect(errorOf('source: { type: postgres, url: "${DATABASE_URL}", query: q }')).toMatch(
      /source\.url: environment variable DATABASE_URL is not set/,
    );
  });

  it('refuses credentials written in the file', () => {
    const message = errorOf(
      'source: { type: postgres, url: "postgres://u:secret@db/x", query: q }\ndestinations:\n  ads:\n    type: meta\n    access_token: EAAB123\n',
    );
    expect(message).toMatch(/source\.url: a connection string with a password/);
    expect(message).toMatch(
      /destinations\.ads\.access_token: a credential written in the file.*\$\{ACCESS_TOKEN\}/,
    );
    expect(message).not.toContain('EAAB123');
    expect(message).not.toContain('secret');
    const ok = parse(
      'source: { type: csv, path: a.csv }\ndestinations:\n  ads: { type: meta, access_token: "${META_TOKEN}" }',
      {
        META_TOKEN: 'EAAB',
      },
    );
    expect(ok.destinations.ads).toMatchObject({ access_token: 'EAAB' });
  });

  it('checks segment settings belong to the chosen map', () => {
    expect(errorOf('source: { type: csv, path: a.csv }\nsegments: { map: codes }')).toMatch(
      /segments\.codes: map: codes needs/,
    );
    expect(
      errorOf('source: { type: csv, path: a.csv }\nsegments: { map: codes, codes: { A: [556] } }'),
    ).toMatch(/segments\.codes\.A\[0\]/);
  });

  it('reports YAML syntax errors with a position', () => {
    expect(errorOf('source: [type: csv\n')).toMatch(/test\.yaml:\d+:\d+: YAML syntax error/);
  });
});
