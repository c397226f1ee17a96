import { render } from 'preact';
import { AudiencePage } from './pages/audience.js';
import { LoginPage } from './pages/login.js';
import { NotFoundPage } from './pages/not-found.js';
import { OverviewPage } from './pages/overview.js';
import { RunsPage } from './pages/runs.js';
import { SegmentPage } from './pages/segment.js';
import './style.css';

// The server picks the page by its URL and names it on <body data-page>; each page is a full page load.
const pages = {
  overview: OverviewPage,
  audience: AudiencePage,
  segment: SegmentPage,
  runs: RunsPage,
  login: LoginPage,
  'not-found': NotFoundPage,
} as const;
const name = document.body.dataset.page as keyof typeof pages | undefined;
const Page = (name && pages[name]) || NotFoundPage;
render(<Page />, document.getElementById('app')!);
