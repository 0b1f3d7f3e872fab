// Why this exists: the browser must load the package over HTTP (ES modules and
// `WebAssembly.instantiateStreaming` need a real origin and `application/wasm`), and nothing else
// may be needed. So: a tiny static server on 127.0.0.1, the repo root read-only, GET and HEAD
// only, no path outside the root, no dotfiles (.git). Used by vectors.test.mjs and bench.mjs.
import { createServer } from 'node:http';
import { createReadStream, realpathSync, statSync } from 'node:fs';
import { extname, join, resolve, sep } from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

/** Serves `root` on 127.0.0.1 (a free port): `{ url, close }`, `url` ending in `/`. */
export async function serveStatic(root) {
  const top = realpathSync(resolve(root));
  const server = createServer((req, res) => {
    const send = (status, text) => {
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(req.method === 'HEAD' ? undefined : `${text}\n`);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(405, 'method not allowed');
    }
    let path;
    try {
      // The path as sent, not normalised (a URL parser would fold `..` away and hide it).
      path = decodeURIComponent(req.url.split(/[?#]/)[0]);
    } catch {
      return send(400, 'bad path');
    }
    const parts = path.split('/').filter((p) => p !== '');
    // No `..`, no dotfiles or dot-directories, no NUL, no backslashes: whatever the URL parser
    // left, refuse it rather than resolve it.
    if (parts.some((p) => p.startsWith('.') || p.includes('\0') || p.includes('\\'))) {
      return send(403, 'forbidden');
    }
    let file = join(top, ...parts);
    let st;
    try {
      // Symlinks may not lead out of the root either.
      file = realpathSync(file);
      if (file !== top && !file.startsWith(top + sep)) return send(403, 'forbidden');
      st = statSync(file);
      if (st.isDirectory()) {
        file = join(file, 'index.html');
        st = statSync(file);
      }
    } catch {
      return send(404, 'not found');
    }
    if (!st.isFile()) return send(404, 'not found');
    res.writeHead(200, {
      'content-type': TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'content-length': st.size,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    });
    if (req.method === 'HEAD') return res.end();
    createReadStream(file).on('error', () => res.destroy()).pipe(res);
  });
  await new Promise((ok, fail) => server.once('error', fail).listen(0, '127.0.0.1', ok));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () => new Promise((ok) => { server.closeAllConnections(); server.close(() => ok()); }),
  };
}
