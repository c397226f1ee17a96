import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import {
  redisCluster,
  redisConfigProblem,
  redisSentinel,
  redisTarget,
  redisWhere,
} from '../../src/redis-url.js';

describe('REDIS_URL', () => {
  it('reads host, port, user, password, database and TLS', () => {
    expect(redisTarget(undefined)).toEqual({ host: '127.0.0.1', port: 6379 });
    expect(redisTarget('')).toEqual({ host: '127.0.0.1', port: 6379 });
    expect(redisTarget('redis://cache.internal')).toEqual({ host: 'cache.internal', port: 6379 });
    expect(redisTarget('redis://:p%40ss@10.0.0.5:6380/2')).toEqual({
      host: '10.0.0.5',
      port: 6380,
      password: 'p@ss',
      db: 2,
    });
    expect(redisTarget('rediss://app:secret@[::1]:7000/')).toEqual({
      host: '::1',
      port: 7000,
      username: 'app',
      password: 'secret',
      tls: {},
    });
  });

  it.each([
    ['redis//127.0.0.1:6379', /does not parse as a URL/],
    ['localhost:6379', /starts with 'localhost:'/],
    ['http://user:hunter2@127.0.0.1', /starts with 'http:'/],
    ['redis://127.0.0.1:6379/cache', /'\/cache' is not a database number/],
    ['redis://127.0.0.1:6379?password=hunter2', /options after \?/],
    ['redis://u:%zz@127.0.0.1', /broken %-escape/],
  ])('%s: names REDIS_URL and the form, never the password', (url, why) => {
    let error: unknown;
    try {
      redisTarget(url);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const text = `${(error as ConfigError).message} ${(error as ConfigError).hint}`;
    expect(text).toMatch(why);
    expect(text).toContain('REDIS_URL');
    expect(text).toContain('redis://[user:password@]host:port[/db]');
    expect(text).not.toMatch(/hunter2|%zz/);
  });

  it('messages show where, without the password', () => {
    expect(redisWhere('redis://app:secret@db:6379/1')).toBe('REDIS_URL (redis://***@db:6379/1)');
    expect(redisWhere(undefined)).toBe('redis://127.0.0.1:6379 (REDIS_URL is not set)');
  });

  it('tells errors no reconnection fixes from outages', () => {
    expect(redisConfigProblem(new Error('NOAUTH Authentication required.'))).toMatch(/needs a password/);
    expect(
      redisConfigProblem(new Error('WRONGPASS invalid username-password pair or user is disabled.')),
    ).toMatch(/rejected the user name or password/);
    expect(redisConfigProblem(new Error('MOVED 228 10.0.0.7:6379'))).toMatch(
      /hash slot 228.*10\.0\.0\.7:6379/,
    );
    // TLS: a certificate not trusted (by Node's code, or its words), not for the host, or no TLS at all.
    const untrusted = Object.assign(new Error('unable to get local issuer certificate'), {
      code: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
    });
    expect(redisConfigProblem(untrusted)).toMatch(/does not trust .*NODE_EXTRA_CA_CERTS=\/path\/to\/ca\.pem/);
    expect(redisConfigProblem(new Error('certificate has expired'))).toMatch(/renew an expired certificate/);
    const altname = Object.assign(
      new Error(
        "Hostname/IP does not match certificate's altnames: Host: 10.0.0.9. is not in the cert's altnames",
      ),
      { code: 'ERR_TLS_CERT_ALTNAME_INVALID' },
    );
    expect(redisConfigProblem(altname)).toMatch(/is not for the host in REDIS_URL/);
    expect(redisConfigProblem(new Error('ssl3_get_record:wrong version number'))).toMatch(
      /does not speak TLS.*write redis:\/\/ instead of rediss:\/\//,
    );
    expect(redisConfigProblem(new Error('connect ECONNREFUSED 127.0.0.1:6379'))).toBeUndefined();
    expect(
      redisConfigProblem(new Error("Stream isn't writeable and enableOfflineQueue options is false")),
    ).toBeUndefined();
  });
});

describe('REDIS_CLUSTER_NODES', () => {
  it('is unset: one Redis (REDIS_URL)', () => {
    expect(redisCluster(undefined, undefined, 'redis://127.0.0.1:6379')).toBeUndefined();
    expect(redisCluster('  ', undefined, undefined)).toBeUndefined();
  });

  it('reads nodes as host:port or URLs, with one user, password and TLS for all, and a NAT map', () => {
    expect(redisCluster('10.0.0.1:7000, 10.0.0.2:7001,[::1]:7002', undefined, undefined)).toEqual({
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
        { host: '::1', port: 7002 },
      ],
    });
    expect(
      redisCluster(
        'rediss://app:s%40cret@a.internal:6379,rediss://b.internal:6379',
        'a.internal:6379=127.0.0.1:16379, b.internal:6379=127.0.0.1:16380',
        '',
      ),
    ).toEqual({
      nodes: [
        { host: 'a.internal', port: 6379 },
        { host: 'b.internal', port: 6379 },
      ],
      username: 'app',
      password: 's@cret',
      tls: {},
      natMap: {
        'a.internal:6379': { host: '127.0.0.1', port: 16379 },
        'b.internal:6379': { host: '127.0.0.1', port: 16380 },
      },
    });
  });

  it.each([
    ['10.0.0.1', undefined, undefined, /'10\.0\.0\.1' is not host:port/],
    ['10.0.0.1:99999', undefined, undefined, /is not host:port/],
    [',,', undefined, undefined, /names no node/],
    ['redis://u:hunter2@a:1/3', undefined, undefined, /database 3: a Redis Cluster has database 0 only/],
    ['redis://u:hunter2@a:1,redis://u:other@b:1', undefined, undefined, /different user names or passwords/],
    ['rediss://a:1,b:1', undefined, undefined, /mixes rediss:\/\/ \(TLS\) and plain nodes/],
    ['a:1', 'a:1', undefined, /REDIS_CLUSTER_NAT 'a:1' is not announced=reachable/],
    ['a:1', undefined, 'redis://:hunter2@b:1', /both REDIS_URL and REDIS_CLUSTER_NODES are set/],
  ])(
    '%s (NAT %s, REDIS_URL %s): names the variable and the fix, never the password',
    (nodes, nat, url, why) => {
      let error: unknown;
      try {
        redisCluster(nodes, nat, url);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ConfigError);
      const text = `${(error as ConfigError).message} ${(error as ConfigError).hint}`;
      expect(text).toMatch(why);
      expect(text).toMatch(/REDIS_CLUSTER_NODES|REDIS_CLUSTER_NAT/);
      expect(text).not.toMatch(/hunter2/);
    },
  );

  it('messages show the nodes, without passwords', () => {
    expect(redisWhere(undefined, 'redis://app:secret@a:7000, b:7001')).toBe(
      'the Redis Cluster of REDIS_CLUSTER_NODES (redis://***@a:7000, b:7001)',
    );
  });
});

describe('REDIS_SENTINELS', () => {
  it('is unset: one Redis (REDIS_URL) or a Cluster', () => {
    expect(redisSentinel(undefined, 'redis://127.0.0.1:6379', undefined)).toBeUndefined();
    expect(redisSentinel(' ', undefined, 'a:1')).toBeUndefined();
  });

  it('reads the Sentinels, and the master from REDIS_URL: its name, login, database and TLS', () => {
    expect(redisSentinel('10.0.0.1:26379, [::1]:26380', 'redis://mymaster', undefined)).toEqual({
      sentinels: [
        { host: '10.0.0.1', port: 26379 },
        { host: '::1', port: 26380 },
      ],
      name: 'mymaster',
    });
    expect(
      redisSentinel(
        'rediss://watch:s%40fe@s1:26379,rediss://s2:26379',
        'rediss://app:p%40ss@audiences/2',
        '',
      ),
    ).toEqual({
      sentinels: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26379 },
      ],
      name: 'audiences',
      sentinelUsername: 'watch',
      sentinelPassword: 's@fe',
      sentinelTLS: {},
      username: 'app',
      password: 'p@ss',
      db: 2,
      tls: {},
      enableTLSForSentinelMode: true,
    });
  });

  it.each([
    ['s1:26379', undefined, undefined, /REDIS_URL does not name the master/],
    ['s1:26379', 'redis://:hunter2@10.0.0.5:6379', undefined, /names a port: with REDIS_SENTINELS set/],
    ['s1', 'redis://mymaster', undefined, /REDIS_SENTINELS 's1' is not host:port/],
    [',', 'redis://mymaster', undefined, /names no Sentinel/],
    [
      'redis://:hunter2@s1:1,redis://:other@s2:1',
      'redis://m',
      undefined,
      /different user names or passwords/,
    ],
    ['rediss://s1:1,s2:1', 'redis://m', undefined, /mixes rediss:\/\/ \(TLS\) and plain nodes/],
    ['s1:1', 'redis://m', 'a:1', /both REDIS_SENTINELS and REDIS_CLUSTER_NODES are set/],
  ])(
    '%s (REDIS_URL %s, REDIS_CLUSTER_NODES %s): names the variable and the fix, never the password',
    (sentinels, url, nodes, why) => {
      let error: unknown;
      try {
        redisSentinel(sentinels, url, nodes);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ConfigError);
      const text = `${(error as ConfigError).message} ${(error as ConfigError).hint}`;
      expect(text).toMatch(why);
      expect(text).toMatch(/REDIS_SENTINELS|REDIS_URL/);
      expect(text).not.toMatch(/hunter2/);
    },
  );

  it('messages show the master and the Sentinels, without passwords', () => {
    expect(
      redisWhere('redis://app:secret@mymaster/1', undefined, 'redis://w:secret@s1:26379, s2:26379'),
    ).toBe(
      "the master 'mymaster' (REDIS_URL) of the Sentinels of REDIS_SENTINELS (redis://***@s1:26379, s2:26379)",
    );
  });
});
