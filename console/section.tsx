import type { ComponentChildren } from 'preact';
import type { Loaded } from './load.js';

/** A titled part of a page, named for screen readers by its heading. */
export function Section(props: { title: string; id: string; children: ComponentChildren }) {
  return (
    <section aria-labelledby={`${props.id}-title`} class="section">
      <h2 id={`${props.id}-title`}>{props.title}</h2>
      {props.children}
    </section>
  );
}

/** What a section shows until its data is there: loading, or the API's error where the data would be. */
export function Status<T>(props: { loaded: Loaded<T> }) {
  return props.loaded.state === 'failed' ? (
    <p role="alert" class="error">
      {props.loaded.error}
    </p>
  ) : (
    <p class="loading" aria-live="polite">
      Loading…
    </p>
  );
}
