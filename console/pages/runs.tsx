import { useMemo, useState } from 'preact/hooks';
import { call, type RecentRuns, type Session } from '../api.js';
import { audiencePath } from '../health.js';
import { SignedInPage } from '../layout.js';
import { useLoad } from '../load.js';
import { Section, Status } from '../section.js';
import { RunTable } from './audience.js';

type Which = 'all' | 'failed';

/** `?status=failed` in the address: only the failed runs. */
const whichOf = (search: string): Which =>
  new URLSearchParams(search).get('status') === 'failed' ? 'failed' : 'all';

export function RunsPage() {
  document.title = 'Runs · audience-sync';
  const which = useMemo(() => whichOf(location.search), []);
  return (
    <SignedInPage heading="Runs">
      {(session) => (
        <>
          <nav class="period" aria-label="Which runs">
            <a href="/runs" aria-current={which === 'all' ? 'page' : undefined}>
              All runs
            </a>
            <a href="/runs?status=failed" aria-current={which === 'failed' ? 'page' : undefined}>
              Failed runs
            </a>
          </nav>
          <Runs which={which} session={session} />
        </>
      )}
    </SignedInPage>
  );
}

type Row = RecentRuns['runs'][number];

function Runs(props: { which: Which; session: Session }) {
  const [pages, setPages] = useState<RecentRuns[]>([]);
  const [more, setMore] = useState<string | null>(null);
  const [error, setError] = useState<string>();
  const page = async (cursor?: string) => {
    const query = new URLSearchParams({ status: props.which, limit: '50' });
    if (cursor) query.set('cursor', cursor);
    const p = await call<RecentRuns>('GET', `/api/v1/runs?${query}`);
    setPages((all) => [...all, p]);
    setMore(p.next_cursor);
    return p;
  };
  const first = useLoad('runs', () => page());
  const older = () => page(more!).catch((e: unknown) => setError((e as Error).message));
  const title =
    props.which === 'failed' ? 'Failed runs across destinations' : 'Recent runs across destinations';
  const runs = pages.flatMap((p) => p.runs);
  return (
    <Section title={title} id="runs">
      {first.state !== 'ready' ? (
        <Status loaded={first} />
      ) : runs.length === 0 ? (
        <p>{props.which === 'failed' ? 'No run has failed.' : 'No run yet.'}</p>
      ) : (
        <>
          <ul class="audience-links" aria-label="Audiences of these runs">
            {[...new Map(runs.map((r) => [`${r.destination}\u0000${r.audience}`, r])).values()].map((r) => (
              <li>
                <a href={audiencePath(r.destination, r.audience)}>
                  {r.audience} on {r.destination}
                </a>
              </li>
            ))}
          </ul>
          <RunTable<Row>
            runs={runs}
            caption={`${title}, newest first`}
            filename={`runs-${props.which}.csv`}
            lead={[
              { title: 'Destination', value: (r) => r.destination },
              { title: 'Audience', value: (r) => r.audience },
            ]}
          />
          {more && (
            <button type="button" onClick={() => void older()}>
              Show older runs
            </button>
          )}
        </>
      )}
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
    </Section>
  );
}
