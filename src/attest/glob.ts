// Device paths and bounded globs as firmware profiles name them. Pure.
//
// A path is absolute, normalized (no empty, `.` or `..` levels, no trailing slash) and at most
// 1024 bytes. A glob may use `*` (any run of characters within one level, dot files included)
// and `?` (one character) — nothing that recurses (`**`) or needs escaping rules (`[...]`,
// `{a,b}`, `\`), so what a pattern can match is obvious from reading it and its expansion
// costs one directory listing per globbed level.

export const MAX_PATH_BYTES = 1024;

export type PathSegment = { readonly literal: string } | { readonly pattern: RegExp; readonly text: string };

export interface DevicePath {
  readonly text: string;
  readonly segments: readonly PathSegment[];
  readonly isGlob: boolean;
}

/** Parses a profile path or glob; returns the reason it is refused as a string. */
export function parseDevicePath(text: string): DevicePath | string {
  if (typeof text !== 'string' || text.length === 0) return 'must be a non-empty string';
  if (Buffer.byteLength(text, 'utf8') > MAX_PATH_BYTES) return `is longer than ${MAX_PATH_BYTES} bytes`;
  if (!text.startsWith('/')) return 'must be an absolute path (starting with "/")';
  if (text === '/') return 'must name a file, not "/"';
  if (text.includes('\u0000')) return 'must not contain NUL';
  if (text.endsWith('/')) return 'must not end with "/"';
  const levels = text.slice(1).split('/');
  const segments: PathSegment[] = [];
  let isGlob = false;
  for (const level of levels) {
    if (level === '') return 'must not contain empty levels ("//")';
    if (level === '.' || level === '..') return `must not contain "${level}" levels`;
    if (/[[\]{}\\]/.test(level)) return `level ${JSON.stringify(level)}: only the glob characters * and ? are supported`;
    if (level.includes('**')) return `level ${JSON.stringify(level)}: "**" is not supported (globs never recurse)`;
    if (/[*?]/.test(level)) {
      isGlob = true;
      segments.push({ pattern: segmentPattern(level), text: level });
    } else segments.push({ literal: level });
  }
  return { text, segments, isGlob };
}

/** Whether a concrete device path matches a parsed pattern (a literal path matches itself). */
export function matchesDevicePath(pattern: DevicePath, candidate: string): boolean {
  if (!pattern.isGlob) return pattern.text === candidate;
  const levels = candidate.slice(1).split('/');
  if (!candidate.startsWith('/') || levels.length !== pattern.segments.length) return false;
  return pattern.segments.every((segment, i) => ('literal' in segment ? segment.literal === levels[i] : segment.pattern.test(levels[i]!)));
}

function segmentPattern(level: string): RegExp {
  const body = [...level].map((ch) => (ch === '*' ? '.*' : ch === '?' ? '.' : ch.replace(/[.+^$()|/]/g, '\\$&'))).join('');
  return new RegExp(`^${body}$`, 'su');
}
