import { describe, expect, it } from 'vitest';
import { DEFAULT_API_VERSION } from './config.js';
import { GRAPH_VERSIONS, versionNotice } from './versions.js';

const day = (text: string) => new Date(`${text}T12:00:00Z`);

describe('Graph API versions', () => {
  it('defaults to the newest version, which was served on the day this table was last checked', () => {
    expect(DEFAULT_API_VERSION).toBe(GRAPH_VERSIONS.at(-1)!.version);
    // 2026-12-03: v24.0 had expired on 2026-11-10, v25.0 is served until 2027-02-23.
    expect(versionNotice(DEFAULT_API_VERSION, day('2026-12-03'))).toBeUndefined();
  });

  it('says a version expired, naming the setting and the version to set', () => {
    expect(versionNotice('v24.0', day('2026-12-03'))).toEqual({
      expired: true,
      text: 'Graph API v24.0 expired on 2026-11-10: set api_version: v25.0 (or leave it out for the newest version this release knows)',
    });
    expect(versionNotice('v19.0', day('2026-12-03'))?.expired).toBe(true);
  });

  it('warns from 60 days before a version expires, and not before; says nothing of a newer version', () => {
    expect(versionNotice('v25.0', day('2026-12-24'))).toBeUndefined();
    expect(versionNotice('v25.0', day('2026-12-25'))).toEqual({
      expired: false,
      text: 'Graph API v25.0 expires on 2027-02-23 (in 60 days): set api_version: v25.0 (or leave it out for the newest version this release knows)',
    });
    expect(versionNotice('v25.0', day('2027-02-22'))?.text).toMatch(/in 1 day\)/);
    expect(versionNotice('v26.0', day('2026-12-03'))).toBeUndefined();
  });
});
