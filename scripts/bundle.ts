/**
 * `npm run bundle`: the whole proxy as one file, dist/assuan-proxy.mjs, that runs with only `node` (>= 20.12): no
 * node_modules, no package files beside it. Bridge mode sends it to the far side this way. The files the proxy
 * reads at run time (src/packageFiles.ts) are inlined: that one module is replaced by one holding them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { build, type Plugin } from 'esbuild';
import { RUNTIME_FILES } from '../src/packageFiles.js';

const root = path.resolve(import.meta.dirname, '..');
export const BUNDLE_PATH = path.join(root, 'dist', 'assuan-proxy.mjs');

/** Replaces src/packageFiles.ts with the same interface over the files themselves, base64 in the bundle. */
const inlinePackageFiles: Plugin = {
  name: 'inline-package-files',
  setup(esbuild) {
    esbuild.onLoad({ filter: /[\\/]src[\\/]packageFiles\.ts$/ }, () => {
      const files = Object.fromEntries(RUNTIME_FILES.map((file) => [file, fs.readFileSync(path.join(root, file)).toString('base64')]));
      return {
        loader: 'js',
        contents: `
          const FILES = ${JSON.stringify(files)};
          export const RUNTIME_FILES = ${JSON.stringify(RUNTIME_FILES)};
          export function readPackageFile(file) { return Buffer.from(FILES[file], 'base64'); }
          export function packageVersion() { return JSON.parse(readPackageFile('package.json').toString('utf8')).version; }
          export function clientEndCode() {
            if (!import.meta.url.startsWith('file:')) throw new Error('this copy of the single-file build was not started from a file: pass --client-end-code FILE');
            return require('node:fs').readFileSync(new URL(import.meta.url));
          }
        `,
      };
    });
  },
};

export async function bundle(outfile = BUNDLE_PATH): Promise<{ outfile: string; bytes: number }> {
  await build({
    entryPoints: [path.join(root, 'src', 'cli.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // The CommonJS dependencies (pino, ws) require Node's own modules; in an ES module that needs a require.
    // On the far side of a bridge link the bundle runs from a data: URL, which createRequire does not take; it
    // needs only Node's own modules, which any base finds.
    banner: {
      js: "import { createRequire as __bundleRequire } from 'node:module';\nconst require = __bundleRequire(import.meta.url.startsWith('file:') ? import.meta.url : 'file:///assuan-proxy.mjs');",
    },
    // ws loads these native speed-ups if they are installed, and works without them.
    external: ['bufferutil', 'utf-8-validate'],
    plugins: [inlinePackageFiles],
    legalComments: 'eof',
    logLevel: 'warning',
  });
  fs.chmodSync(outfile, 0o755);
  return { outfile, bytes: fs.statSync(outfile).size };
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  const { outfile, bytes } = await bundle(process.argv[2] ? path.resolve(process.argv[2]) : BUNDLE_PATH);
  process.stdout.write(`wrote ${path.relative(process.cwd(), outfile)} (${(bytes / 1024).toFixed(0)} KiB)\n`);
}
