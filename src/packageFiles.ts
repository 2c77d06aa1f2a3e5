/**
 * Files of this package read at run time (the live view's page and diagrams, the version), by their path from
 * the package root. Run from source or from the built `dist/`, they are read from disk; the single-file build
 * (`npm run bundle`) replaces this module with one holding the same files inlined, so it runs with only `node`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE_NAME = 'assuan-session-proxy';

/** The files the package reads at run time; the single-file build inlines exactly these. */
export const RUNTIME_FILES = [
  'package.json',
  'src/liveView/assets/index.html',
  'src/liveView/assets/live-view.css',
  'src/liveView/assets/live-view.js',
  'diagrams/server-lifecycle.svg',
  'diagrams/session-lifecycle.svg',
  'diagrams/link-lifecycle.svg',
] as const;
export type RuntimeFile = (typeof RUNTIME_FILES)[number];

let root: string | undefined;

/** This package's root: the nearest directory above this module whose package.json is ours (src/ or dist/src/). */
function packageRoot(): string {
  if (root) return root;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest) && (JSON.parse(fs.readFileSync(manifest, 'utf8')) as { name?: string }).name === PACKAGE_NAME) return (root = dir);
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find the ${PACKAGE_NAME} package around ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

export function readPackageFile(file: RuntimeFile): Buffer {
  return fs.readFileSync(path.join(packageRoot(), file));
}

/**
 * The single-file build, which bridge mode runs on the far side. Built by `npm run bundle` (and by `npm pack`);
 * the single-file build itself answers with its own file.
 */
export function clientEndCode(): Buffer {
  const file = path.join(packageRoot(), 'dist', 'assuan-proxy.mjs');
  try {
    return fs.readFileSync(file);
  } catch {
    throw new Error(`the single-file build is missing (${file}): run 'npm run bundle', or pass --client-end-code FILE`);
  }
}

export function packageVersion(): string {
  return (JSON.parse(readPackageFile('package.json').toString('utf8')) as { version: string }).version;
}
