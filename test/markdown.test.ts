import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

/**
 * Lines that open a code block in `text` but are not closed by a fence line of their own: a closing fence
 * followed by text (```` ``` Command two… ````) does not close, and the rest of the page shows as code.
 */
function unclosedFences(text: string): number[] {
  let open: { line: number; fence: string } | undefined;
  const bad: number[] = [];
  text.split('\n').forEach((line, i) => {
    const fence = /^ {0,3}(`{3,}|~{3,})/.exec(line)?.[1];
    if (!fence) return;
    if (!open) open = { line: i + 1, fence };
    else if (fence[0] === open.fence[0] && fence.length >= open.fence.length) {
      if (line.trim() === fence) open = undefined;
      else bad.push(i + 1);
    }
  });
  return open ? [...bad, open.line] : bad;
}

describe('the documentation', () => {
  it('closes every code block it opens, on a line of its own', () => {
    const files = execFileSync('git', ['ls-files', '*.md'], { encoding: 'utf8' }).split('\n').filter(Boolean);
    expect(files).toContain('README.md');
    const broken = files
      .map((f) => [f, unclosedFences(readFileSync(f, 'utf8'))] as const)
      .filter(([, lines]) => lines.length > 0);
    expect(broken).toEqual([]);
  });

  it('tells a fence with text after it from one that closes', () => {
    expect(unclosedFences('```sh\nnpm test\n``` Command two\ntext\n')).toEqual([3, 1]);
    expect(unclosedFences('```sh\nnpm test\n```\n\ntext\n')).toEqual([]);
  });
});
