import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { redisConfigProblem, redisTarget, redisWhere } from '../../src/redis-url.js';

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
    expect(redisConfigProblem(new Error('connect ECONNREFUSED 127.0.0.1:6379'))).toBeUndefined();
    expect(
      redisConfigProblem(new Error("Stream isn't writeable and enableOfflineQueue options is false")),
    ).toBeUndefined();
  });
});
