// Builds the Lightbox viewer into dist/ (committed): `npm ci && npm run build`.
//
//   dist/viewer.js                  main bundle (ESM), exports + window.LightboxViewer
//   dist/decodeImageFrameWorker.js  the DICOM image loader's decode worker (ESM); the
//                                   loader opens it with new URL('./decodeImageFrameWorker.js',
//                                   import.meta.url), so it must sit beside viewer.js
//   dist/*.wasm                     codec binaries, loaded by the worker relative to itself
import { build } from 'esbuild';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'dist');
const nm = join(here, 'node_modules');
const loaderDir = join(nm, '@cornerstonejs', 'dicom-image-loader', 'dist', 'esm');

// The codec decoders locate their .wasm with new URL('<package>/<export>', import.meta.url),
// which a bundler without asset support leaves as a bare relative URL. Rewrite each to the
// file name copied into dist/, so it resolves beside the worker bundle.
const WASM = {
  '@cornerstonejs/codec-charls/decodewasm': 'codec-charls/dist/charlswasm_decode.wasm',
  '@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasm':
    'codec-libjpeg-turbo-8bit/dist/libjpegturbowasm_decode.wasm',
  '@cornerstonejs/codec-openjpeg/decodewasm': 'codec-openjpeg/dist/openjpegwasm_decode.wasm',
  '@cornerstonejs/codec-openjph/wasm': 'codec-openjph/dist/openjphjs.wasm',
};

const wasmUrlPlugin = {
  name: 'lightbox-wasm-url',
  setup(b) {
    b.onLoad({ filter: /dicom-image-loader[\\/]dist[\\/]esm[\\/]shared[\\/]decoders[\\/].*\.js$/ }, (args) => {
      let code = readFileSync(args.path, 'utf8');
      for (const [spec, file] of Object.entries(WASM)) {
        const name = file.split('/').pop();
        code = code.split(`'${spec}'`).join(`'./${name}'`);
      }
      return { contents: code, loader: 'js', resolveDir: dirname(args.path) };
    });
  },
};

const common = {
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  minify: true,
  sourcemap: false,
  legalComments: 'none',
  // The emscripten codecs reach for these only when running under Node.
  external: ['fs', 'path'],
  define: { 'process.env.NODE_ENV': '"production"' },
  // Cornerstone logs every prefetched image with console.log; keep warnings and errors.
  pure: ['console.log', 'console.debug'],
  logLevel: 'info',
  plugins: [wasmUrlPlugin],
};

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  ...common,
  entryPoints: { viewer: join(here, 'src', 'viewer.js') },
  outdir: out,
  // Dynamic imports (lazy JS decoders) must not produce extra chunks: keep one file.
  splitting: false,
});

await build({
  ...common,
  entryPoints: { decodeImageFrameWorker: join(loaderDir, 'decodeImageFrameWorker.js') },
  outdir: out,
  splitting: false,
});

for (const file of Object.values(WASM)) {
  const dest = join(out, file.split('/').pop());
  copyFileSync(join(nm, '@cornerstonejs', file), dest);
  chmodSync(dest, 0o644); // the packages ship them executable
}

let total = 0;
for (const f of readdirSync(out).sort()) {
  const size = statSync(join(out, f)).size;
  total += size;
  console.log(`${(size / 1024).toFixed(0).padStart(7)} KiB  dist/${f}`);
}
console.log(`${(total / 1024).toFixed(0).padStart(7)} KiB  total`);
