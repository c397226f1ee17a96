import { useMemo, useRef, useState } from 'preact/hooks';
import {
  ApiFailure,
  call,
  type Action,
  type AudienceHealth,
  type Job,
  type Run,
  type Runs,
  type Session,
} from '../api.js';
import { Chart, escapeHtml, type ChartOption } from '../chart.js';
import { axisTime, count, dateTime, share } from '../format.js';
import { STATUSES, statusOf } from '../health.js';
import { SignedInPage } from '../layout.js';
import { useLoad } from '../load.js';
import { Section, Status } from '../section.js';
import { DataTable, type Column } from '../table.js';

/** The destination and audience named by the address (/destinations/:d/audiences/:a). */
function namesOf(pathname: string): { destination: string; audience: string } {
  const [, , destination = '', , audience = ''] = pathname.split('/');
  return { destination: decodeURIComponent(destination), audience: decodeURIComponent(audience) };
}

export function AudiencePage() {
  const names = useMemo(() => namesOf(location.pathname), []);
  document.title = `${names.audience} on ${names.destination} · audience-sync`;
  const [version, setVersion] = useState(0);
  return (
    <SignedInPage
      heading={
        <>
          {names.audience} <span class="muted">on {names.destination}</span>
        </>
      }
    >
      {(session) => (
        <Audience {...names} session={session} version={version} reload={() => setVersion((v) => v + 1)} />
      )}
    </SignedInPage>
  );
}

const base = (d: string, a: string) =>
  `/api/v1/destinations/${encodeURIComponent(d)}/audiences/${encodeURIComponent(a)}`;

function Audience(props: {
  destination: string;
  audience: string;
  session: Session;
  version: number;
  reload: () => void;
}) {
  const { destination, audience } = props;
  const health = useLoad(`health ${props.version}`, () =>
    call<AudienceHealth>('GET', base(destination, audience)),
  );
  const said = useSaid();
  return (
    <>
      {health.state === 'ready' ? (
        <Summary health={health.data} />
      ) : (
        <Section title="Status" id="status">
          <Status loaded={health} />
        </Section>
      )}
      {props.session.role === 'operator' && health.state === 'ready' && (
        <Section title="Actions" id="actions">
          <Actions health={health.data} done={props.reload} said={said} />
        </Section>
      )}
      <Section title="Size and match rate over time" id="sizes">
        {health.state === 'ready' ? <Readings health={health.data} /> : <Status loaded={health} />}
      </Section>
      <Section title="Runs" id="runs">
        <RunHistory key={props.version} destination={destination} audience={audience} />
      </Section>
    </>
  );
}

function Summary(props: { health: AudienceHealth }) {
  const h = props.health;
  const d = h.divergence;
  return (
    <Section title="Status" id="status">
      <p>
        <span class={`badge ${statusOf(h)}`}>{STATUSES[statusOf(h)]}</span>
        {h.paused && <span class="badge paused">Paused</span>}
      </p>
      <dl class="facts">
        <dt>Expected</dt>
        <dd>{count(h.expected)}</dd>
        <dt>Confirmed</dt>
        <dd>{count(h.confirmed)}</dd>
        <dt>Platform size</dt>
        <dd>
          {count(h.platform?.size)}
          {h.platform?.counts === 'identifiers' ? ' identifiers' : ''}
        </dd>
        <dt>Match rate</dt>
        <dd>{share(h.platform?.matchRate)}</dd>
        <dt>Last run</dt>
        <dd>{dateTime(h.lastRun?.at)}</dd>
        <dt>Next run</dt>
        <dd>{dateTime(h.nextRun)}</dd>
      </dl>
      {d.divergent && (
        <p role="alert" class="warning">
          Diverging since {dateTime(d.since)}: the platform counts {count(d.platformSize)} where{' '}
          {count(d.sent)} members were sent ({count(d.expected)} expected); the band is {count(d.band?.low)}{' '}
          to {count(d.band?.high)} (
          {d.baseline.from === 'match_rate' ? 'from the match rate' : 'from earlier readings'}, ±
          {share(d.share)}), and the platform may take {count(d.processingMinutes)} minutes to show an upload.
        </p>
      )}
      {(h.platform?.problems ?? []).map((problem) => (
        <p role="alert" class="error">
          The platform will not serve this audience: {problem}
        </p>
      ))}
      {h.lastRun?.error && (
        <p role="alert" class="error">
          The last run failed: {h.lastRun.error}
        </p>
      )}
    </Section>
  );
}

type Reading = AudienceHealth['readings'][number];

function Readings(props: { health: AudienceHealth }) {
  const { readings } = props.health;
  const option = useMemo<ChartOption>(
    () => ({
      legend: { top: 0 },
      grid: { left: 56, right: 56, top: 40, bottom: 32 },
      tooltip: {
        trigger: 'axis',
        confine: true,
        formatter: (params: unknown) => {
          const items = params as { seriesName: string; value: [string, number | null] }[];
          const at = items[0]?.value[0];
          return [
            escapeHtml(at ? dateTime(at) : ''),
            ...items.map(
              (i) =>
                `${escapeHtml(i.seriesName)}: ${i.seriesName === 'Match rate' ? share(i.value[1]) : count(i.value[1])}`,
            ),
          ].join('<br>');
        },
      },
      // Labels in the configured time zone (ECharts itself knows only the browser's own zone and UTC).
      xAxis: { type: 'time', axisLabel: { formatter: (ms: number) => axisTime(ms), hideOverlap: true } },
      yAxis: [
        { type: 'value', name: 'Members' },
        {
          type: 'value',
          name: 'Match rate',
          min: 0,
          max: 1,
          axisLabel: { formatter: (v: number) => share(v) },
        },
      ],
      series: [
        ['Expected', (r: Reading) => r.expected],
        ['Confirmed', (r: Reading) => r.confirmed],
        ['Platform size', (r: Reading) => r.size],
      ]
        .map(([name, value]) => ({
          name: name as string,
          type: 'line',
          connectNulls: false,
          data: readings.map((r) => [r.at, (value as (r: Reading) => number | null)(r)]),
        }))
        .concat([
          {
            name: 'Match rate',
            type: 'line',
            yAxisIndex: 1,
            connectNulls: false,
            data: readings.map((r) => [r.at, r.matchRate]),
          } as never,
        ]),
    }),
    [readings],
  );
  if (readings.length === 0) return <p>The platform has not been read yet: run a sync or read its sizes.</p>;
  const columns: Column<Reading>[] = [
    { title: 'Read at', value: (r) => r.at, show: (r) => dateTime(r.at) },
    { title: 'Expected', value: (r) => r.expected, show: (r) => count(r.expected), numeric: true },
    { title: 'Confirmed', value: (r) => r.confirmed, show: (r) => count(r.confirmed), numeric: true },
    { title: 'Platform size', value: (r) => r.size, show: (r) => count(r.size), numeric: true },
    { title: 'Match rate', value: (r) => r.matchRate, show: (r) => share(r.matchRate), numeric: true },
    { title: 'Counts', value: (r) => r.counts },
    { title: 'Error', value: (r) => r.error ?? '' },
  ];
  const { audience, destination } = props.health;
  return (
    <>
      <Chart
        class="trend"
        label={`${audience} on ${destination}: expected, confirmed and platform size, and match rate, at each reading`}
        option={option}
      />
      <DataTable
        caption={`Readings of ${audience} on ${destination}`}
        filename={`readings-${destination}-${audience}.csv`}
        columns={columns}
        rows={readings}
        folded
      />
    </>
  );
}

const reasons = (counts: Record<string, number> | null): string =>
  counts
    ? Object.entries(counts)
        .map(([why, n]) => `${why}: ${n}`)
        .join('; ')
    : '';

function RunHistory(props: { destination: string; audience: string }) {
  const [pages, setPages] = useState<Runs[]>([]);
  const [more, setMore] = useState<string | null>(null);
  const [error, setError] = useState<string>();
  const first = useLoad('runs', async () => {
    const page = await call<Runs>('GET', `${base(props.destination, props.audience)}/runs?limit=20`);
    setPages([page]);
    setMore(page.next_cursor);
    return page;
  });
  const older = async () => {
    try {
      const query = new URLSearchParams({ limit: '20', cursor: more! });
      const page = await call<Runs>('GET', `${base(props.destination, props.audience)}/runs?${query}`);
      setPages((p) => [...p, page]);
      setMore(page.next_cursor);
    } catch (e) {
      setError((e as Error).message);
    }
  };
  if (first.state !== 'ready') return <Status loaded={first} />;
  const runs = pages.flatMap((p) => p.runs);
  if (runs.length === 0) return <p>No run of this audience yet.</p>;
  return (
    <>
      <RunTable
        runs={runs}
        caption={`Runs of ${props.audience} on ${props.destination}, newest first`}
        filename={`runs-${props.destination}-${props.audience}.csv`}
      />
      {more && (
        <button type="button" onClick={() => void older()}>
          Show older runs
        </button>
      )}
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
    </>
  );
}

/** A run history as a table (an audience's, or the runs across destinations). */
export function RunTable<R extends Run>(props: {
  runs: R[];
  caption: string;
  filename: string;
  lead?: Column<R>[];
}) {
  const columns: Column<R>[] = [
    { title: 'Started', value: (r) => r.at, show: (r) => dateTime(r.at) },
    ...(props.lead ?? []),
    { title: 'Why', value: (r) => r.reason + (r.full ? ' (full)' : '') },
    { title: 'Outcome', value: (r) => r.outcome },
    { title: 'Added', value: (r) => r.added, show: (r) => count(r.added), numeric: true },
    { title: 'Removed', value: (r) => r.removed, show: (r) => count(r.removed), numeric: true },
    { title: 'Unchanged', value: (r) => r.unchanged, show: (r) => count(r.unchanged), numeric: true },
    {
      title: 'Skipped',
      value: (r) => (r.skipped ? Object.values(r.skipped).reduce((a, b) => a + b, 0) : null),
      show: (r) =>
        r.skipped
          ? `${count(Object.values(r.skipped).reduce((a, b) => a + b, 0))}${reasons(r.skipped) ? ` (${reasons(r.skipped)})` : ''}`
          : '–',
      numeric: true,
    },
    { title: 'Rejected', value: (r) => r.rejected, show: (r) => count(r.rejected), numeric: true },
    { title: 'Rejected why', value: (r) => reasons(r.rejected_reasons) },
    { title: 'Duration (s)', value: (r) => r.duration_ms / 1000, numeric: true },
    { title: 'Error', value: (r) => r.error ?? '' },
  ];
  return <DataTable caption={props.caption} filename={props.filename} columns={columns} rows={props.runs} />;
}

const ACTIONS = {
  resync: { label: 'Resync', body: {}, says: 'sync the changes of this audience now' },
  full: { label: 'Full resync', body: { full: true }, says: 're-send every member of this audience now' },
  pause: { label: 'Pause', body: undefined, says: 'pause every scheduled sync of the destination' },
  resume: { label: 'Resume', body: undefined, says: 'resume the scheduled syncs of the destination' },
  check: { label: 'Check', body: undefined, says: "test the destination's credentials on a worker" },
} as const;
type ActionName = keyof typeof ACTIONS;

const ENDED = new Set(['completed', 'failed']);

/** What the actions say, kept by the page: the health reloads (and the actions with it) when a job ends. */
function useSaid() {
  const [progress, setProgress] = useState<string>();
  const [failure, setFailure] = useState<string>();
  const [busy, setBusy] = useState(false);
  return { progress, setProgress, failure, setFailure, busy, setBusy };
}
type Said = ReturnType<typeof useSaid>;

/** Operators only: the destination's actions, each confirmed in a dialog, then its job followed to its end. */
function Actions(props: { health: AudienceHealth; done: () => void; said: Said }) {
  const { destination, audience, paused } = props.health;
  const dialog = useRef<HTMLDialogElement>(null);
  const [asking, setAsking] = useState<ActionName>();
  const { progress, setProgress, failure, setFailure, busy, setBusy } = props.said;
  const shown: ActionName[] = ['resync', 'full', paused ? 'resume' : 'pause', 'check'];

  const ask = (name: ActionName) => {
    setAsking(name);
    dialog.current!.showModal();
  };
  /** Polls a job until it ends; its final state. */
  const follow = async (job: { id: string; url: string }, what: string): Promise<Job> => {
    for (;;) {
      const status = await call<Job>('GET', job.url);
      setProgress(`${what}: ${status.state} (job ${status.id})`);
      if (ENDED.has(status.state)) return status;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  };
  const go = async (name: ActionName) => {
    setBusy(true);
    setFailure(undefined);
    const label = ACTIONS[name].label;
    try {
      const path = `/api/v1/destinations/${encodeURIComponent(destination)}/${name === 'full' ? 'resync' : name}`;
      const body = name === 'resync' || name === 'full' ? { audience, ...ACTIONS[name].body } : undefined;
      const action = await call<Action>('POST', path, body);
      let job = await follow(action.job, label);
      if (job.state === 'completed' && job.result?.sync_job)
        job = await follow(job.result.sync_job, `${label} run`);
      if (job.state === 'failed') setFailure(`${label} failed: ${job.failed_reason ?? 'no reason given'}`);
      else {
        const checks = job.result?.checks;
        setProgress(
          `${label}: completed (job ${job.id})` +
            (checks
              ? `; ${checks.map((c) => `${c.name}: ${c.ok ? 'ok' : 'failed'} (${c.detail})`).join('; ')}`
              : ''),
        );
      }
      props.done();
    } catch (e) {
      setFailure(`${label}: ${e instanceof ApiFailure ? e.message : (e as Error).message}`);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <div class="actions">
        {shown.map((name) => (
          <button type="button" class="operator" disabled={busy} onClick={() => ask(name)}>
            {ACTIONS[name].label}
          </button>
        ))}
      </div>
      <p role="status">{progress}</p>
      {failure && (
        <p role="alert" class="error">
          {failure}
        </p>
      )}
      <dialog ref={dialog} aria-labelledby="confirm-title">
        <h2 id="confirm-title">{asking ? `${ACTIONS[asking].label}?` : ''}</h2>
        <p>{asking ? `This will ${ACTIONS[asking].says} (${audience} on ${destination}).` : ''}</p>
        <div class="actions">
          <button
            type="button"
            onClick={() => {
              dialog.current!.close();
              if (asking) void go(asking);
            }}
          >
            {asking ? ACTIONS[asking].label : 'Go'}
          </button>
          <button type="button" onClick={() => dialog.current!.close()}>
            Cancel
          </button>
        </div>
      </dialog>
    </>
  );
}
