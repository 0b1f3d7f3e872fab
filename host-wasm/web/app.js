// The key-setup page's script (issue 15 builds the page on it). It loads the JS package that
// `byok serve` embeds beside it (pkg/, built by scripts/build-wasm.sh) and says whether it is
// ready: the identifier parsing, the grant and the offline validation run in it, by the same
// core the server runs.
const status = document.getElementById('status');
try {
  const { default: init, parseKeyArn } = await import('./pkg/byok_wasm.js');
  await init();
  status.textContent = typeof parseKeyArn === 'function' ? 'Ready.' : 'The package is incomplete.';
  document.documentElement.dataset.ready = 'true';
} catch (e) {
  status.className = 'error';
  status.textContent = 'The page could not load its WebAssembly package: ' +
    'the server was built without it (run scripts/build-wasm.sh, then rebuild byok).';
  document.documentElement.dataset.ready = 'false';
  console.error(e);
}
