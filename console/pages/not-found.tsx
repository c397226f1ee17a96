import { Layout } from '../layout.js';

export function NotFoundPage() {
  document.title = 'Page not found · audience-sync';
  return (
    <Layout>
      <h1>Page not found</h1>
      <p>
        There is no page at <code>{location.pathname}</code>. Check the address, or go to the{' '}
        <a href="/">overview</a>.
      </p>
    </Layout>
  );
}
