import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { currentSession, logOut, type Session } from './api.js';
import { useLoad } from './load.js';
import { Status } from './section.js';

/** The header (site name, navigation, who is logged in, logout) and the page's main landmark. */
export function Layout(props: { session?: Session | undefined; children: ComponentChildren }) {
  const [error, setError] = useState<string>();
  const out = async () => {
    try {
      await logOut();
      location.assign('/login');
    } catch (e) {
      setError(`Logging out failed: ${(e as Error).message}`);
    }
  };
  return (
    <>
      <header class="site">
        <a class="brand" href="/">
          audience-sync
        </a>
        {props.session && (
          <nav aria-label="Pages">
            <a href="/" aria-current={location.pathname === '/' ? 'page' : undefined}>
              Overview
            </a>
            {props.session.role === 'operator' && (
              <a href="/runs" aria-current={location.pathname === '/runs' ? 'page' : undefined}>
                Runs
              </a>
            )}
            {props.session.role === 'operator' && <a href="/admin/queues">Queues</a>}
          </nav>
        )}
        {props.session && (
          <div class="who">
            <span>
              {props.session.user} <span class="role">({props.session.role})</span>
            </span>
            {props.session.via === 'session' && (
              <button type="button" onClick={out}>
                Log out
              </button>
            )}
          </div>
        )}
      </header>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <main id="main">{props.children}</main>
    </>
  );
}

/**
 * A page for someone logged in: its heading, and the session's loading or error until it is known, then
 * the page's body for that session.
 */
export function SignedInPage(props: {
  heading: ComponentChildren;
  children: (session: Session) => ComponentChildren;
}) {
  const session = useLoad('session', currentSession);
  return (
    <Layout session={session.state === 'ready' ? session.data : undefined}>
      <h1>{props.heading}</h1>
      {session.state === 'ready' ? props.children(session.data) : <Status loaded={session} />}
    </Layout>
  );
}
