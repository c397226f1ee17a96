import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { redact } from '../../src/redact.js';

/** A config file with this `redis:` block (YAML, indented under it), loaded with `env`. */
function load(block: string, env: NodeJS.ProcessEnv) {
  const dir = mkdtempSync(path.join(tmpdir(), 'audience-sync-redis-config-'));
  const file = path.join(dir, 'audience-sync.yaml');
  writeFileSync(file, `source: { type: csv, path: orders.csv }\nredis:\n${block}\n`);
  return loadConfig(file, env);
}
const errorOf = (block: string, env: NodeJS.ProcessEnv = {}) => {
  try {
    load(block, env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return `${(error as ConfigError).message}\nhint: ${(error as ConfigError).hint}`;
  }
  throw new Error('expected a ConfigError');
};

describe("the config's redis: block", () => {
  it('stands for REDIS_URL: a login from the environment, TLS', () => {
    const env: NodeJS.ProcessEnv = { REDIS_PASSWORD: 'p@ss:w/rd' };
    const { config } = load(
      '  url: redis://cache.internal:6380/2\n  username: app\n  password: ${REDIS_PASSWORD}\n  tls: true',
      env,
    );
    expect(config.redis?.tls).toBe(true);
    expect(env.REDIS_URL).toBe('rediss://app:p%40ss%3Aw%2Frd@cache.internal:6380/2');
    expect(env.REDIS_CLUSTER_NODES).toBeUndefined();
    // The password is redacted wherever it would be printed, encoded or not.
    expect(redact(`${env.REDIS_URL} p@ss:w/rd`)).not.toMatch(/p@ss|p%40ss/);
  });

  it('stands for REDIS_CLUSTER_NODES and REDIS_CLUSTER_NAT', () => {
    const env: NodeJS.ProcessEnv = {};
    load(
      '  cluster_nodes: [10.0.0.1:7000, 10.0.0.2:7001]\n  cluster_nat: { "10.0.0.1:7000": "1.2.3.4:17000" }',
      env,
    );
    expect(env.REDIS_CLUSTER_NODES).toBe('10.0.0.1:7000,10.0.0.2:7001');
    expect(env.REDIS_CLUSTER_NAT).toBe('10.0.0.1:7000=1.2.3.4:17000');
    const secured: NodeJS.ProcessEnv = { PW: 'secret' };
    load('  cluster_nodes: [10.0.0.1:7000]\n  password: ${PW}\n  tls: true', secured);
    expect(secured.REDIS_CLUSTER_NODES).toBe('rediss://:secret@10.0.0.1:7000');
  });

  it('stands for REDIS_SENTINELS, with the master named by url and the Sentinels’ own login', () => {
    const env: NodeJS.ProcessEnv = { MASTER_PW: 'm', SENTINEL_PW: 's' };
    load(
      '  url: redis://mymaster\n  password: ${MASTER_PW}\n  sentinels: [10.0.0.5:26379, 10.0.0.6:26379]\n  sentinel_password: ${SENTINEL_PW}',
      env,
    );
    expect(env.REDIS_URL).toBe('redis://:m@mymaster');
    expect(env.REDIS_SENTINELS).toBe('redis://:s@10.0.0.5:26379,redis://:s@10.0.0.6:26379');
  });

  it('agrees with the environment or says which variable disagrees; loads again as it is', () => {
    const env: NodeJS.ProcessEnv = { REDIS_URL: 'redis://127.0.0.1:6379' };
    load('  url: redis://127.0.0.1:6379', env);
    // Loaded again (a worker's next run), the variables it set agree with it.
    load('  url: redis://127.0.0.1:6379', env);
    expect(errorOf('  url: redis://10.0.0.9:6379', env)).toMatch(
      /REDIS_URL is set in the environment and the config's redis: block .* says otherwise[^]*unset REDIS_URL, or remove the redis: block[^]*restart it/,
    );
    expect(errorOf('  cluster_nodes: [10.0.0.1:7000]', { REDIS_URL: 'redis://127.0.0.1:6379' })).toMatch(
      /REDIS_URL is set in the environment and the config's redis: block .* does not set it/,
    );
  });

  it('refuses a block that names no Redis, or two, or a password written in it', () => {
    expect(errorOf('  tls: true')).toMatch(/redis\.url.*give url .* or cluster_nodes/);
    expect(errorOf('  url: redis://a:6379\n  cluster_nodes: [b:7000]')).toMatch(
      /redis\.cluster_nodes.*a Cluster is given by its nodes alone/,
    );
    expect(errorOf('  sentinels: [a:26379]')).toMatch(/name the master the Sentinels watch/);
    expect(errorOf('  cluster_nodes: [b:7000]\n  sentinels: [a:26379]')).toMatch(/remove sentinels/);
    expect(errorOf('  url: redis://a:6379\n  cluster_nat: { "a:1": "b:2" }')).toMatch(
      /cluster_nat maps the nodes/,
    );
    expect(errorOf('  url: redis://a:6379\n  password: hunter2')).toMatch(
      /redis\.password.*credential written in the file/,
    );
    expect(errorOf('  url: redis://a:6379\n  password: hunter2')).not.toMatch(/hunter2/);
    // The variables' own forms, checked at load, naming the block.
    expect(errorOf('  cluster_nodes: [not-a-node]')).toMatch(
      /redis: REDIS_CLUSTER_NODES 'not-a-node' is not host:port/,
    );
    expect(errorOf('  url: redis://mymaster:6379\n  sentinels: [a:26379]')).toMatch(/redis: /);
  });
});
