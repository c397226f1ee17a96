import { useState } from 'preact/hooks';
import { ApiFailure, logIn, safeNext } from '../api.js';
import { Layout } from '../layout.js';

export function LoginPage() {
  document.title = 'Log in · audience-sync';
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const submit = async (event: SubmitEvent) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    setBusy(true);
    setError(undefined);
    try {
      await logIn(String(form.get('name') ?? ''), String(form.get('password') ?? ''));
      location.assign(safeNext(new URLSearchParams(location.search).get('next')));
    } catch (e) {
      setError(
        e instanceof ApiFailure && e.status === 400
          ? 'Enter your user name and password.'
          : e instanceof ApiFailure
            ? e.message
            : `The server cannot be reached: ${(e as Error).message}`,
      );
      setBusy(false);
    }
  };
  return (
    <Layout>
      <h1>Log in</h1>
      <form class="login" onSubmit={submit}>
        <label for="name">User name</label>
        <input id="name" name="name" autocomplete="username" required />
        <label for="password">Password</label>
        <input id="password" name="password" type="password" autocomplete="current-password" required />
        <button type="submit" disabled={busy}>
          Log in
        </button>
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
      </form>
    </Layout>
  );
}
