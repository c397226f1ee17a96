import nock from 'nock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConnectorError, type Member } from '../../src/connector.js';
import { createLogger } from '../../src/log.js';
import { DEFAULT_RETRY, retryDelay, withRetry } from '../../src/push/retry.js';
import { basic, FakeMailchimp, md5, RESULTS_ORIGIN } from './fixtures/fake.js';
import { MailchimpClient } from './client.js';
import { identify } from './identifiers.js';
import { mailchimpConfigSchema, mailchimpConnector, type MailchimpConfig } from './index.js';

const KEY = '0123456789abcdef0123456789abcdef-us9';
const LIST = 'a1b2c3d4e5';
const log = createLogger({ level: 'silent', json: true });

function setup(settings: Partial<Record<keyof MailchimpConfig, unknown>> = {}, fakeKey = KEY) {
  const config = mailchimpConfigSchema.parse({
    type: 'mailchimp',
    api_key: KEY,
    list_id: LIST,
    batch_poll_seconds: 0.01,
    ...settings,
  });
  const fake = new FakeMailchimp(
    fakeKey,
    LIST,
    config.endpoint ? new URL(config.endpoint).origin : undefined,
  );
  fake.install();
  const client = mailchimpConnector.create(config, { destination: 'mc', baseDir: '.', log });
  return { fake, client, config };
}

/** A member as the core builds it: subscriber hash slot, email in plain (unless `withEmail` is false). */
function member(email: string, withEmail = true): Member {
  const id = identify({ email });
  if ('skip' in id) throw new Error(id.skip);
  return { key: Buffer.alloc(8), slots: id.slots, plain: withEmail ? id.plain : undefined };
}

const emails = (n: number, prefix = 'c') => Array.from({ length: n }, (_, i) => `${prefix}${i}@example.com`);

beforeEach(() => {
  nock.disableNetConnect();
  nock.enableNetConnect(/127\.0\.0\.1|localhost/);
});
afterEach(() => {
  nock.cleanAll();
  nock.enableNetConnect();
});

describe('mailchimp config', () => {
  it('takes the data centre from the API key and fills the defaults', () => {
    const config = mailchimpConfigSchema.parse({ type: 'mailchimp', api_key: 'abc-us21', list_id: LIST });
    expect(config).toMatchObject({
      missing_members: 'skip',
      status_if_new: 'transactional',
      max_connections: 5,
      batch_size: 500,
      batch_operations_threshold: 5000,
    });
    expect(mailchimpConnector.batchSize(config)).toBe(10_000);
    expect(mailchimpConnector.final(config)).toBe(true);
    expect(mailchimpConnector.plaintext).toBe(true);
  });

  it('refuses a key without its data-centre suffix, saying so without echoing the key', () => {
    const r = mailchimpConfigSchema.safeParse({
      type: 'mailchimp',
      api_key: 'abcdef0123456789',
      list_id: LIST,
    });
    expect(r.success).toBe(false);
    const text = JSON.stringify(r.error?.issues);
    expect(text).toMatch(/no data-centre suffix \(such as -us21\)/);
    expect(text).not.toContain('abcdef0123456789');
  });

  it('caps arrays at 500 and connections at 10', () => {
    const base = { type: 'mailchimp', api_key: KEY, list_id: LIST };
    expect(mailchimpConfigSchema.safeParse({ ...base, batch_size: 501 }).success).toBe(false);
    expect(mailchimpConfigSchema.safeParse({ ...base, max_connections: 11 }).success).toBe(false);
  });
});

describe('mailchimp client at the wire', () => {
  it('calls the data centre of the key with Basic auth, and checks key, data centre and audience', async () => {
    const { fake, client } = setup();
    const checks = await client.check();
    expect(checks).toEqual([
      { name: 'data centre', ok: true, detail: 'us9 answers at https://us9.api.mailchimp.com/3.0' },
      { name: 'api key', ok: true, detail: 'Mailchimp accepted the API key' },
      { name: 'audience', ok: true, detail: `audience 'Fake shop' (${LIST}), 0 subscribed contacts` },
    ]);
    expect(fake.requests.map((r) => [r.host, r.method, r.path])).toEqual([
      ['https://us9.api.mailchimp.com', 'GET', '/3.0/ping'],
      ['https://us9.api.mailchimp.com', 'GET', `/3.0/lists/${LIST}`],
    ]);
    expect(fake.requests[0]!.authorization).toBe(`Basic ${Buffer.from(`user:${KEY}`).toString('base64')}`);
  });

  it('creates the tag as a static segment, then tags members in arrays of at most 500', async () => {
    const { fake, client } = setup();
    const list = emails(1200);
    for (const e of list) fake.addContact(e);
    const tag = await client.ensureAudience('Champions');
    expect(tag).toMatchObject({ name: 'Champions', created: true });
    expect(fake.calls('POST', /\/segments$/).map((r) => r.body)).toEqual([
      { name: 'Champions', static_segment: [] },
    ]);
    const outcome = await client.add(
      tag,
      list.map((e) => member(e)),
    );
    expect(outcome).toEqual({ status: 'confirmed' });
    const posts = fake.calls('POST', new RegExp(`/lists/${LIST}/segments/${tag.id}$`));
    expect(posts.map((r) => (r.body as { members_to_add: string[] }).members_to_add.length)).toEqual([
      500, 500, 200,
    ]);
    expect(posts.every((r) => Object.keys(r.body as object).join() === 'members_to_add')).toBe(true);
    expect(fake.tagged('Champions')).toEqual(new Set(list));
    expect(await client.stats(tag)).toEqual({ size: 1200, warnings: [] });
  });

  it('finds tags by name over pages of 1,000 (static only, read once) and by the id it remembered', async () => {
    const { fake, client } = setup();
    for (let i = 0; i < 1500; i++) fake.segments.set(String(i + 1), { name: `Tag ${i}`, type: 'static' });
    fake.segments.set('9999', { name: 'Saved', type: 'saved' });
    expect(await client.ensureAudience('Tag 1200')).toEqual({ id: '1201', name: 'Tag 1200', created: false });
    expect(await client.ensureAudience('Tag 3')).toEqual({ id: '4', name: 'Tag 3', created: false });
    const pages = fake.calls('GET', /\/segments$/).map((r) => r.query);
    expect(pages).toEqual([
      expect.objectContaining({ type: 'static', count: '1000' }),
      expect.objectContaining({ type: 'static', count: '1000', offset: '1000' }),
    ]);
    expect(pages[0]).not.toHaveProperty('offset');
    // The id from an earlier run wins, under the tag's current name; a deleted one is found again by name.
    fake.segments.set('1201', { name: 'Renamed', type: 'static' });
    expect(await client.ensureAudience('Tag 1200', '1201')).toEqual({
      id: '1201',
      name: 'Renamed',
      created: false,
    });
    expect(await client.ensureAudience('Tag 5', '424242')).toEqual({
      id: '6',
      name: 'Tag 5',
      created: false,
    });
    expect(fake.calls('POST', /segments/)).toHaveLength(0);
  });

  it('skips members who are not contacts, with the reason, whether Mailchimp lists them in errors or not', async () => {
    for (const reportMissing of [true, false]) {
      const { fake, client } = setup();
      fake.reportMissing = reportMissing;
      fake.addContact('a@example.com');
      fake.addContact('tagged@example.com');
      const tag = await client.ensureAudience('At Risk');
      fake.contacts.get(md5('tagged@example.com'))!.tags.add(tag.id);
      const batch = ['a@example.com', 'missing@example.com', 'tagged@example.com'].map((e) => member(e));
      expect(await client.add(tag, batch)).toEqual({
        status: 'confirmed',
        // Left out by the setting, not refused by Mailchimp: the core counts it as skipped.
        rejected: [{ index: 1, reason: 'not in the Mailchimp audience', skipped: true }],
      });
      // Neither tagged nor refused: the contact is looked up, never created.
      expect(fake.calls('GET', /\/members\//).map((r) => r.path)).toEqual(
        expect.arrayContaining([`/3.0/lists/${LIST}/members/${md5('missing@example.com')}`]),
      );
      expect(fake.calls('PUT', /./)).toHaveLength(0);
      expect(fake.tagged('At Risk')).toEqual(new Set(['a@example.com', 'tagged@example.com']));
      nock.cleanAll();
    }
  });

  it('upserts missing members with status_if_new (never status); compliance and forgotten are skipped, with their reason', async () => {
    const { fake, client } = setup({ missing_members: 'upsert' });
    fake.addContact('old@example.com', 'unsubscribed');
    fake.compliance.add('blocked@example.com');
    fake.forgotten.add('gone@example.com');
    const tag = await client.ensureAudience('Loyal');
    const batch = ['old@example.com', 'new@example.com', 'blocked@example.com', 'gone@example.com'];
    expect(
      await client.add(
        tag,
        batch.map((e) => member(e)),
      ),
    ).toEqual({
      status: 'confirmed',
      rejected: [
        { index: 2, reason: 'mailchimp: compliance state', skipped: true },
        { index: 3, reason: 'mailchimp: forgotten (permanently deleted)', skipped: true },
      ],
    });
    const puts = fake.calls('PUT', /\/members\//);
    expect(puts.map((r) => r.body)).toEqual([
      { email_address: 'new@example.com', status_if_new: 'transactional' },
      { email_address: 'blocked@example.com', status_if_new: 'transactional' },
      { email_address: 'gone@example.com', status_if_new: 'transactional' },
    ]);
    expect(puts.map((r) => r.path)).toContain(`/3.0/lists/${LIST}/members/${md5('new@example.com')}`);
    expect(fake.contacts.get(md5('old@example.com'))!.status).toBe('unsubscribed');
    expect(fake.contacts.get(md5('new@example.com'))!.status).toBe('transactional');
    expect(fake.tagged('Loyal')).toEqual(new Set(['old@example.com', 'new@example.com']));
  });

  it('never re-subscribes: archived, compliance-state and forgotten contacts are skipped per reason, directly and through /batches', async () => {
    for (const threshold of [5000, 1]) {
      const { fake, client } = setup({ missing_members: 'upsert', batch_operations_threshold: threshold });
      fake.addContact('unsub@example.com', 'unsubscribed');
      fake.addContact('cleaned@example.com', 'cleaned');
      fake.addContact('archived@example.com', 'archived');
      fake.compliance.add('blocked@example.com');
      fake.forgotten.add('gone@example.com');
      const tag = await client.ensureAudience('Loyal');
      const batch = [
        'unsub@example.com',
        'cleaned@example.com',
        'archived@example.com',
        'blocked@example.com',
        'gone@example.com',
        'new@example.com',
      ];
      expect(
        await client.add(
          tag,
          batch.map((e) => member(e)),
        ),
        `threshold ${threshold}`,
      ).toEqual({
        status: 'confirmed',
        rejected: [
          { index: 2, reason: 'mailchimp: archived', skipped: true },
          { index: 3, reason: 'mailchimp: compliance state', skipped: true },
          { index: 4, reason: 'mailchimp: forgotten (permanently deleted)', skipped: true },
        ],
      });
      // Upserted with status_if_new only, in either route: no contact's subscription changed.
      const puts = [
        ...fake.calls('PUT', /\/members\//).map((r) => r.body as object),
        ...[...fake.batches.values()].flatMap((b) =>
          b.operations.filter((o) => o.method === 'PUT').map((o) => JSON.parse(o.body!) as object),
        ),
      ];
      expect(puts.length).toBe(4);
      for (const body of puts) expect(Object.keys(body).sort()).toEqual(['email_address', 'status_if_new']);
      expect(
        ['unsub', 'cleaned', 'archived'].map((n) => fake.contacts.get(md5(`${n}@example.com`))!.status),
      ).toEqual(['unsubscribed', 'cleaned', 'archived']);
      // The unsubscribed and cleaned contacts hold the tag (a tag sends nothing); the archived one does not.
      expect(fake.tagged('Loyal')).toEqual(
        new Set(['unsub@example.com', 'cleaned@example.com', 'new@example.com']),
      );
      nock.cleanAll();
    }
  });

  it('in skip mode, looks up who was not tagged: archived or refused for their state is skipped per reason, never upserted', async () => {
    const { fake, client } = setup();
    fake.addContact('sub@example.com');
    fake.addContact('archived@example.com', 'archived');
    fake.addContact('unsub@example.com', 'unsubscribed');
    const tag = await client.ensureAudience('Loyal');
    // Mailchimp refuses to tag the unsubscribed contact, in the segment endpoint's own shape.
    fake.failNext = [
      [
        200,
        {
          members_added: [{ email_address: 'sub@example.com', status: 'subscribed' }],
          members_removed: [],
          errors: [
            {
              email_addresses: ['unsub@example.com'],
              error: 'unsub@example.com is unsubscribed and cannot be added to this segment',
            },
          ],
          total_added: 1,
          total_removed: 0,
          error_count: 1,
        },
      ],
    ];
    const batch = ['sub@example.com', 'archived@example.com', 'unsub@example.com'].map((e) => member(e));
    expect(await client.add(tag, batch)).toEqual({
      status: 'confirmed',
      rejected: [
        { index: 1, reason: 'mailchimp: archived', skipped: true },
        { index: 2, reason: 'mailchimp: unsubscribed', skipped: true },
      ],
    });
    expect(fake.calls('GET', /\/members\//).map((r) => r.path)).toEqual([
      `/3.0/lists/${LIST}/members/${md5('archived@example.com')}`,
      `/3.0/lists/${LIST}/members/${md5('unsub@example.com')}`,
    ]);
    expect(fake.calls('PUT', /./)).toHaveLength(0);
  });

  it('deletes a contact for an erasure: archive is DELETE, permanent the delete-permanent action; a 404 is already gone', async () => {
    const { fake, client } = setup();
    fake.addContact('archive.me@example.com');
    fake.addContact('delete.me@example.com');
    const hashOf = (e: string) => md5(e);
    expect(await client.forgetContact!(member('archive.me@example.com', false), 'archive')).toBe('deleted');
    expect(await client.forgetContact!(member('delete.me@example.com', false), 'permanent')).toBe('deleted');
    expect(await client.forgetContact!(member('never@example.com', false), 'permanent')).toBe('absent');
    // A digest of another platform's (a SHA-256) is not a subscriber hash: no request.
    const sha = Buffer.from('f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79', 'hex');
    expect(await client.forgetContact!({ key: Buffer.alloc(8), slots: [sha] }, 'archive')).toBe('ignored');
    expect(fake.requests.map((r) => [r.method, r.path])).toEqual([
      ['DELETE', `/3.0/lists/${LIST}/members/${hashOf('archive.me@example.com')}`],
      ['POST', `/3.0/lists/${LIST}/members/${hashOf('delete.me@example.com')}/actions/delete-permanent`],
      ['POST', `/3.0/lists/${LIST}/members/${hashOf('never@example.com')}/actions/delete-permanent`],
    ]);
    expect(fake.contacts.get(hashOf('archive.me@example.com'))!.status).toBe('archived');
    expect(fake.contacts.has(hashOf('delete.me@example.com'))).toBe(false);
    // Mailchimp then refuses to import the permanently deleted address again.
    const { client: upserting } = setup({ missing_members: 'upsert' }, KEY);
    nock.cleanAll();
    fake.install();
    const tag = await upserting.ensureAudience('Back');
    expect(await upserting.add(tag, [member('delete.me@example.com')])).toEqual({
      status: 'confirmed',
      rejected: [{ index: 0, reason: 'mailchimp: forgotten (permanently deleted)', skipped: true }],
    });
    // A server error is the call's, retried by the caller.
    fake.failNext = [[500, { title: 'Internal Server Error', status: 500, detail: 'oops' }]];
    const error = await client.forgetContact!(member('archive.me@example.com', false), 'archive').catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConnectorError);
    expect((error as ConnectorError).kind).toBe('retryable');
  });

  it('reads partial failure inside a 200, and keeps emails out of the reasons', async () => {
    const { fake, client } = setup();
    fake.addContact('a@example.com');
    fake.addContact('b@example.com');
    const tag = await client.ensureAudience('Champions');
    fake.failNext = [
      [
        200,
        {
          members_added: [{ email_address: 'a@example.com' }],
          members_removed: [],
          errors: [
            {
              email_addresses: ['B@Example.com'],
              error: 'B@Example.com is in a state that cannot be tagged',
            },
          ],
          total_added: 1,
          total_removed: 0,
          error_count: 1,
        },
      ],
    ];
    const outcome = await client.add(tag, [member('a@example.com'), member('b@example.com')]);
    expect(outcome).toEqual({
      status: 'confirmed',
      rejected: [{ index: 1, reason: '<email> is in a state that cannot be tagged' }],
    });
  });

  it('untags by email through the segment endpoint, and by subscriber hash when the email is not at hand', async () => {
    const { fake, client } = setup();
    const tag = await client.ensureAudience('Champions');
    for (const e of ['jane@example.com', 'kept@example.com', 'left@example.com'])
      fake.addContact(e).tags.add(tag.id);
    const outcome = await client.remove(tag, [
      member('left@example.com'),
      member('jane@example.com', false),
      member('never@example.com', false),
    ]);
    expect(outcome).toEqual({ status: 'confirmed' });
    expect(fake.calls('POST', new RegExp(`/segments/${tag.id}$`)).map((r) => r.body)).toEqual([
      { members_to_remove: ['left@example.com'] },
    ]);
    const tags = fake.calls('POST', /\/tags$/);
    expect(tags.map((r) => r.path)).toEqual([
      `/3.0/lists/${LIST}/members/9e26471d35a78862c17e467d87cddedf/tags`,
      `/3.0/lists/${LIST}/members/${md5('never@example.com')}/tags`, // 404: not a contact, done
    ]);
    expect(tags[0]!.body).toEqual({ tags: [{ name: 'Champions', status: 'inactive' }], is_syncing: true });
    expect(fake.tagged('Champions')).toEqual(new Set(['kept@example.com']));
  });

  it('replaces: lists the tag in pages of 1,000 with every status, untags the others in arrays of 500, tags the rest', async () => {
    const { fake, client } = setup({ missing_members: 'upsert' });
    const tag = await client.ensureAudience('Champions');
    const others = emails(1203, 'other');
    const kept = emails(3, 'kept');
    // Tagged already: people to untag (of every status) and to keep; not tagged yet: a contact, a stranger.
    others.forEach((e, i) =>
      fake.addContact(e, ['subscribed', 'unsubscribed', 'cleaned', 'transactional'][i % 4]).tags.add(tag.id),
    );
    for (const e of kept) fake.addContact(e.toUpperCase()).tags.add(tag.id);
    fake.addContact('contact@example.com');
    const mark = fake.requests.length;
    const outcome = await client.replace!(tag, [
      ...kept.map((e) => member(e)),
      member('contact@example.com'),
      member('new@example.com'),
    ]);
    expect(outcome).toEqual({ status: 'confirmed' });
    expect(fake.tagged('Champions')).toEqual(new Set([...kept, 'contact@example.com', 'new@example.com']));
    const sent = fake.requests.slice(mark);
    const listed = sent.filter((r) => r.method === 'GET');
    expect(listed.map((r) => [r.path, r.query])).toEqual(
      [0, 1000].map((offset) => [
        `/3.0/lists/${LIST}/segments/${tag.id}/members`,
        {
          count: '1000',
          ...(offset ? { offset: String(offset) } : {}),
          fields: 'members.email_address,total_items',
          include_cleaned: 'true',
          include_transactional: 'true',
          include_unsubscribed: 'true',
        },
      ]),
    );
    const segment = sent.filter((r) => r.method === 'POST' && r.path.endsWith(`/segments/${tag.id}`));
    const removals = segment.flatMap(
      (r) => (r.body as { members_to_remove?: string[] }).members_to_remove ?? [],
    );
    expect(
      segment.map((r) => (r.body as { members_to_remove?: string[] }).members_to_remove?.length),
    ).toEqual([500, 500, 203, undefined, undefined]);
    expect(removals.sort()).toEqual([...others].sort());
    // Then the members not tagged yet, as `add` sends them: by email, the one not a contact yet created first.
    expect(segment.slice(-2).map((r) => r.body)).toEqual([
      { members_to_add: ['contact@example.com', 'new@example.com'] },
      { members_to_add: ['new@example.com'] },
    ]);
    expect(sent.filter((r) => r.method === 'PUT').map((r) => r.body)).toEqual([
      { email_address: 'new@example.com', status_if_new: 'transactional' },
    ]);

    // Rejections name the member by its index in the call.
    fake.forgotten.add('gone@example.com');
    expect(
      await client.replace!(tag, [member(kept[0]!), member('gone@example.com'), member(kept[1]!)]),
    ).toEqual({
      status: 'confirmed',
      rejected: [{ index: 1, reason: 'mailchimp: forgotten (permanently deleted)', skipped: true }],
    });
    expect(fake.tagged('Champions')).toEqual(new Set(kept.slice(0, 2)));

    // With nobody to keep, the tag ends up empty.
    expect(await client.replace!(tag, [])).toEqual({ status: 'confirmed' });
    expect(fake.tagged('Champions')).toEqual(new Set());
  });

  it('waits out a 429 for its Retry-After, then succeeds', async () => {
    const { fake, client } = setup();
    fake.addContact('a@example.com');
    const tag = await client.ensureAudience('Champions');
    fake.failNext = [
      [429, { title: 'Too Many Requests', status: 429, detail: 'slow down' }, { 'Retry-After': '1' }],
    ];
    const error = await client.add(tag, [member('a@example.com')]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectorError);
    expect(error).toMatchObject({ kind: 'rate_limited', options: { retryAfterMs: 1000 } });
    fake.failNext = [
      [429, { title: 'Too Many Requests', status: 429, detail: 'slow down' }, { 'Retry-After': '1' }],
    ];
    const started = Date.now();
    const outcome = await withRetry('add', () => client.add(tag, [member('a@example.com')]), log);
    expect(outcome).toEqual({ status: 'confirmed' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(990);
    expect(fake.calls('POST', new RegExp(`/segments/${tag.id}$`))).toHaveLength(3);
    expect(fake.tagged('Champions')).toEqual(new Set(['a@example.com']));
  });

  it("takes a bare 403 or a 429 without Retry-After for overload: the core's short backoff, then the same call succeeds", async () => {
    const { fake, client } = setup();
    fake.addContact('a@example.com');
    const tag = await client.ensureAudience('Champions');
    fake.failNext = [[403, '']];
    const error = (await client
      .add(tag, [member('a@example.com')])
      .catch((e: unknown) => e)) as ConnectorError;
    expect(error).toMatchObject({ kind: 'rate_limited', message: expect.stringMatching(/bare 403/) });
    expect(error.options.retryAfterMs).toBeUndefined();
    // The first wait is between half a second and one (the core's backoff), not tens of seconds.
    expect(retryDelay(error, 0, DEFAULT_RETRY, () => 0)).toBe(500);
    expect(retryDelay(error, 0, DEFAULT_RETRY, () => 1)).toBe(1_000);
    fake.failNext = [[429, { title: 'Too Many Requests', status: 429, detail: 'slow down' }]];
    const limited = (await client
      .add(tag, [member('a@example.com')])
      .catch((e: unknown) => e)) as ConnectorError;
    expect(limited).toMatchObject({ kind: 'rate_limited' });
    expect(limited.options.retryAfterMs).toBeUndefined();
    expect(await client.add(tag, [member('a@example.com')])).toEqual({ status: 'confirmed' });
    // A 403 that explains itself is a permission, not a rate limit.
    fake.failNext = [[403, { title: 'Forbidden', status: 403, detail: 'User does not have access' }]];
    await expect(client.stats(tag)).rejects.toMatchObject({ kind: 'permanent' });
  });

  it('retries server errors', async () => {
    const { fake, client } = setup();
    fake.failNext = [[503, { title: 'Service Unavailable', status: 503, detail: 'down' }]];
    await expect(client.ensureAudience('Champions')).rejects.toMatchObject({ kind: 'retryable' });
    // With a Retry-After, its delay.
    fake.failNext = [
      [503, { title: 'Service Unavailable', status: 503, detail: 'down' }, { 'Retry-After': '2' }],
    ];
    await expect(client.ensureAudience('Champions')).rejects.toMatchObject({
      kind: 'retryable',
      options: { retryAfterMs: 2_000 },
    });
  });

  it('fails a bad API key with the fix, and never shows the key or the Authorization header', async () => {
    const { client } = setup({}, 'ffffffffffffffffffffffffffffffff-us9');
    const error = await client.ensureAudience('Champions').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectorError);
    expect(error).toMatchObject({
      kind: 'permanent',
      message: expect.stringMatching(/check MAILCHIMP_API_KEY/),
    });
    const everything = `${(error as Error).message} ${(error as Error).stack} ${JSON.stringify(error)}`;
    expect(everything).not.toContain(KEY);
    expect(everything).not.toContain(KEY.slice(0, 32));
    expect(everything).not.toContain(basic(KEY).slice(6));
    expect((error as Error).cause).toBeUndefined();
    const checks = await client.check();
    expect(checks.map((c) => [c.name, c.ok])).toEqual([
      ['data centre', true],
      ['api key', false],
      ['audience', false],
    ]);
    expect(JSON.stringify(checks)).not.toContain(KEY.slice(0, 32));
  });

  it('names list_id when the audience does not exist', async () => {
    const { client } = setup({ list_id: 'nosuchlist' });
    await expect(client.ensureAudience('Champions')).rejects.toMatchObject({
      kind: 'permanent',
      message: expect.stringMatching(/no audience 'nosuchlist'.*check list_id/),
    });
    const checks = await client.check();
    expect(checks[2]).toMatchObject({
      name: 'audience',
      ok: false,
      detail: expect.stringMatching(/list_id/),
    });
  });

  it('names the data centre when its host does not resolve', async () => {
    const config = mailchimpConfigSchema.parse({ type: 'mailchimp', api_key: 'abc-us999', list_id: LIST });
    const client = mailchimpConnector.create(config, { destination: 'mc', baseDir: '.', log });
    const dnsError = () =>
      Object.assign(new Error('getaddrinfo ENOTFOUND us999.api.mailchimp.com'), { code: 'ENOTFOUND' });
    nock('https://us999.api.mailchimp.com').get('/3.0/ping').replyWithError(dnsError());
    nock('https://us999.api.mailchimp.com')
      .get(`/3.0/lists/${LIST}/segments`)
      .query(true)
      .replyWithError(dnsError());
    const checks = await client.check();
    expect(checks[0]).toMatchObject({
      name: 'data centre',
      ok: false,
      detail: expect.stringMatching(/us999\.api\.mailchimp\.com does not resolve.*suffix \(us999\)/),
    });
    await expect(client.ensureAudience('Champions')).rejects.toMatchObject({ kind: 'permanent' });
  });

  it('talks to the endpoint override instead of the data-centre host', async () => {
    const { fake, client } = setup({ endpoint: 'http://mailchimp.test:8080/3.0' });
    expect((await client.check()).every((c) => c.ok)).toBe(true);
    expect(fake.requests[0]).toMatchObject({ host: 'http://mailchimp.test:8080', path: '/3.0/ping' });
  });

  it('keeps at most max_connections requests in flight', async () => {
    const { fake, client } = setup({ missing_members: 'upsert', max_connections: 2 });
    fake.delayMs = 20;
    const tag = await client.ensureAudience('Champions');
    expect(
      await client.add(
        tag,
        emails(12).map((e) => member(e)),
      ),
    ).toEqual({ status: 'confirmed' });
    expect(fake.calls('PUT', /\/members\//)).toHaveLength(12);
    expect(fake.maxInFlight).toBe(2);
  });
});

describe('mailchimp /batches', () => {
  it('sends a call above the threshold as one job, polls it and maps each result back to its member', async () => {
    const { fake, client } = setup({
      missing_members: 'upsert',
      batch_operations_threshold: 3,
      batch_size: 2,
    });
    for (const e of ['a@example.com', 'b@example.com', 'c@example.com']) fake.addContact(e);
    fake.compliance.add('blocked@example.com');
    const tag = await client.ensureAudience('Champions');
    const batch = ['a', 'b', 'c', 'n1', 'blocked', 'n2', 'n3', 'n4'].map((e) => member(`${e}@example.com`));
    expect(await client.add(tag, batch)).toEqual({
      status: 'confirmed',
      rejected: [{ index: 4, reason: 'mailchimp: compliance state', skipped: true }],
    });
    // Job 1: four segment operations (arrays of 2); job 2: five upserts; job 3: the four new contacts tagged.
    const jobs = fake
      .calls('POST', /^\/3\.0\/batches$/)
      .map((r) => (r.body as { operations: { method: string; path: string; body: string }[] }).operations);
    expect(jobs.map((ops) => ops.map((o) => o.method))).toEqual([
      ['POST', 'POST', 'POST', 'POST'],
      ['PUT', 'PUT', 'PUT', 'PUT', 'PUT'],
      ['POST', 'POST'],
    ]);
    expect(jobs[0]![0]).toEqual({
      method: 'POST',
      path: `/lists/${LIST}/segments/${tag.id}`,
      operation_id: '0',
      body: JSON.stringify({ members_to_add: ['a@example.com', 'b@example.com'] }),
    });
    expect(JSON.parse(jobs[1]![0]!.body)).toEqual({
      email_address: 'n1@example.com',
      status_if_new: 'transactional',
    });
    expect(fake.calls('GET', /^\/3\.0\/batches\//)).toHaveLength(9);
    const downloads = fake.requests.filter((r) => r.host === RESULTS_ORIGIN);
    expect(downloads).toHaveLength(3);
    expect(downloads.every((r) => r.authorization === undefined)).toBe(true);
    expect(fake.tagged('Champions')).toEqual(
      new Set(['a', 'b', 'c', 'n1', 'n2', 'n3', 'n4'].map((e) => `${e}@example.com`)),
    );
  });

  it('removes through a job too: segment removals and untagging by hash together', async () => {
    const { fake, client } = setup({ batch_operations_threshold: 2 });
    const tag = await client.ensureAudience('Champions');
    for (const e of ['a@example.com', 'b@example.com', 'c@example.com']) fake.addContact(e).tags.add(tag.id);
    const outcome = await client.remove(tag, [
      member('a@example.com'),
      member('b@example.com', false),
      member('c@example.com', false),
    ]);
    expect(outcome).toEqual({ status: 'confirmed' });
    const [job] = fake
      .calls('POST', /^\/3\.0\/batches$/)
      .map((r) => (r.body as { operations: { path: string }[] }).operations);
    expect(job!.map((o) => o.path)).toEqual([
      `/lists/${LIST}/segments/${tag.id}`,
      `/lists/${LIST}/members/${md5('b@example.com')}/tags`,
      `/lists/${LIST}/members/${md5('c@example.com')}/tags`,
    ]);
    expect(fake.tagged('Champions').size).toBe(0);
  });

  it('a call retried after the wait ran out follows the same job instead of sending it again', async () => {
    const { fake, client } = setup({
      batch_operations_threshold: 1,
      batch_timeout_seconds: 1,
      batch_poll_seconds: 0.05,
    });
    fake.addContact('a@example.com');
    fake.addContact('b@example.com');
    const tag = await client.ensureAudience('Champions');
    fake.batchPolls = 1_000;
    const batch = [member('a@example.com'), member('b@example.com')];
    await expect(client.add(tag, batch)).rejects.toMatchObject({
      kind: 'retryable',
      message: expect.stringMatching(/still started after 1 s/),
    });
    fake.batchPolls = 0;
    expect(await client.add(tag, batch)).toEqual({ status: 'confirmed' });
    expect(fake.calls('POST', /^\/3\.0\/batches$/)).toHaveLength(1);
    expect(fake.tagged('Champions')).toEqual(new Set(['a@example.com', 'b@example.com']));
  });

  it('a results download that never answers fails the call, retryable and naming the batch', async () => {
    const { fake, config } = setup({ batch_operations_threshold: 1 });
    const client = new MailchimpClient(config, { log }, { resultsTimeoutMs: 200 });
    fake.addContact('a@example.com');
    fake.addContact('b@example.com');
    const tag = await client.ensureAudience('Champions');
    fake.holdResults = true;
    const error = await client.add(tag, [member('a@example.com'), member('b@example.com')]).then(
      () => undefined,
      (e: unknown) => e,
    );
    const [batch] = fake.batches.keys();
    expect(error).toBeInstanceOf(ConnectorError);
    expect(error).toMatchObject({ kind: 'retryable', message: expect.stringContaining(`batch ${batch} `) });
    expect((error as Error).message).toMatch(/timed out/);
    expect(fake.requests.filter((r) => r.host === RESULTS_ORIGIN)).toHaveLength(1);
    // The retry follows the same job and reads its results.
    fake.holdResults = false;
    expect(await client.add(tag, [member('a@example.com'), member('b@example.com')])).toEqual({
      status: 'confirmed',
    });
    expect(fake.calls('POST', /^\/3\.0\/batches$/)).toHaveLength(1);
  });
});
