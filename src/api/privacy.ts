import type { Queue } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { RedisClient } from '../redis-client.js';
import { z } from 'zod';
import { requestErasure } from '../../jobs/erasure.js';
import { ADMIN_QUEUE } from '../../jobs/queues.js';
import type { Config } from '../config/schema.js';
import { UserError } from '../errors.js';
import { auditLog, recordAudit, type AuditEntry } from '../privacy/audit.js';
import { erasures } from '../privacy/erasure.js';
import type { ConnectorRegistry } from '../sync/prepare.js';
import type { Principal } from './auth.js';
import {
  auditSchema,
  erasureAcceptedSchema,
  erasureBodySchema,
  erasuresSchema,
  errorSchema,
} from './schemas.js';

/** What the privacy routes need of the server. */
export interface PrivacyRoutes {
  redis: RedisClient;
  config: () => Config;
  /** The connectors the server was built with. */
  connectors: ConnectorRegistry;
  adminQueue: () => Queue;
  /** A 400 answer naming what to fix. */
  badRequest: (message: string, hint?: string) => Error;
  security: { [scheme: string]: string[] }[];
}

const errors = {
  400: errorSchema,
  401: errorSchema,
  403: errorSchema,
  429: errorSchema,
  503: errorSchema,
} as const;

/** Writes an API action to the audit log. */
export async function auditApi(
  redis: RedisClient,
  config: Config,
  entry: Omit<AuditEntry, 'at'>,
): Promise<void> {
  await recordAudit(redis, config.sync.redis_prefix, config.privacy.audit_keep_days, entry);
}

/** `POST /api/v1/erasures`, `GET /api/v1/erasures` and `GET /api/v1/audit`, for operators. */
export function registerPrivacyRoutes(app: FastifyInstance, routes: PrivacyRoutes): void {
  const api = app.withTypeProvider<ZodTypeProvider>();
  const operator = { access: 'operator' as const };
  api.post(
    '/api/v1/erasures',
    {
      config: operator,
      schema: {
        summary:
          'Forget a person (as `audience-sync forget`): removed from every audience on every destination by a worker, and suppressed',
        tags: ['privacy'],
        security: routes.security,
        body: erasureBodySchema,
        response: { 202: erasureAcceptedSchema, ...errors },
      },
    },
    async (request, reply) => {
      const who = request.principal as Principal;
      const config = routes.config();
      try {
        const { request: erasure, job } = await requestErasure(
          routes.redis,
          routes.adminQueue(),
          config,
          routes.connectors,
          { email: request.body.email, phone: request.body.phone, customerId: request.body.customer_id },
          { user: who.user, via: who.via },
          { mailchimpDelete: request.body.mailchimp_delete },
        );
        const id = job.slice(ADMIN_QUEUE.length + 1);
        return reply.code(202).send({
          erasure: erasure.id,
          destinations: erasure.destinations,
          job: { id: job, url: `/api/v1/jobs/${ADMIN_QUEUE}:${id}` },
        });
      } catch (error) {
        // The message names the kind of identifier, never its value.
        if (error instanceof UserError) throw routes.badRequest(error.message, error.hint);
        throw error;
      }
    },
  );

  api.get(
    '/api/v1/erasures',
    {
      config: operator,
      schema: {
        summary: 'Erasure requests and their receipt per destination (no identifiers)',
        tags: ['privacy'],
        security: routes.security,
        response: { 200: erasuresSchema, ...errors },
      },
    },
    async () => ({ erasures: await erasures(routes.redis, routes.config().sync.redis_prefix) }),
  );

  api.get(
    '/api/v1/audit',
    {
      config: operator,
      schema: {
        summary: 'The audit log of operator actions (who, what, when), newest first',
        tags: ['privacy'],
        security: routes.security,
        querystring: z.object({ limit: z.coerce.number().int().min(1).max(10_000).default(100) }),
        response: { 200: auditSchema, ...errors },
      },
    },
    async (request) => {
      const config = routes.config();
      return {
        audit: await auditLog(routes.redis, config.sync.redis_prefix, {
          limit: request.query.limit,
          since: new Date(Date.now() - config.privacy.audit_keep_days * 86_400_000),
        }),
      };
    },
  );
}
