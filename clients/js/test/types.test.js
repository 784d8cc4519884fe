// The TypeScript declarations compile against their intended use.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

test('src/index.d.ts type-checks the README usage under --strict', () => {
  const dir = fileURLToPath(new URL('..', import.meta.url));
  const tsc = `${dir}/node_modules/typescript/bin/tsc`;
  const r = spawnSync(process.execPath, [tsc, '--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext',
    '--moduleResolution', 'nodenext', '--lib', 'es2022,dom', '--skipLibCheck', 'test/types_check.ts'], { cwd: dir, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
