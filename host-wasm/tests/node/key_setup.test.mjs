// Key setup in the package, black box: a pasted ARN parsed part by part (or refused naming the
// part, with the server's `invalid_request`), the offline validation steps in the server's
// words, and the exact grant, as core computes them for the server.
//
//   node --test host-wasm/tests/node/   (after scripts/build-wasm.sh; BYOK_WASM_PKG overrides)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = process.env.BYOK_WASM_PKG ?? join(here, '..', '..', 'pkg');
const { default: init, parseKeyArn, parseGcpKey, parseAzureKey, keyGrant, providerGrant, offlineValidation } =
  await import(join(pkg, 'byok_wasm.js'));
await init({ module_or_path: readFileSync(join(pkg, 'byok_wasm_bg.wasm')) });

const ARN = 'arn:aws:kms:eu-west-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab';

function refusal(f) {
  try {
    f();
  } catch (e) {
    assert.equal(e.name, 'ByokError');
    return e;
  }
  assert.fail('not refused');
}

test('a pasted key ARN is read part by part, whitespace around it ignored', () => {
  assert.deepEqual(parseKeyArn(` ${ARN}\n`), {
    partition: 'aws', region: 'eu-west-1', account: '444455556666', kind: 'key',
    name: '1234abcd-12ab-34cd-56ef-1234567890ab', key_id: ARN,
    endpoint: 'https://kms.eu-west-1.amazonaws.com/',
  });
  const alias = parseKeyArn('arn:aws-us-gov:kms:us-gov-west-1:444455556666:alias/byok');
  assert.equal(alias.kind, 'alias');
  assert.equal(alias.endpoint, 'https://kms.us-gov-west-1.amazonaws.com/');
});

test('a bad identifier is refused naming its part, what was there and what is expected', () => {
  const cases = [
    ['arn:aws:kms:eu-west-1:4444:key/x', 'account'],
    ['arn:aws:s3:eu-west-1:444455556666:key/x', 'service'],
    ['arn:aws:kms:evil.example:444455556666:key/x', 'region'],
    [`${ARN}\u202e`, 'character'],
    ['x'.repeat(3000), 'length'],
  ];
  for (const [input, part] of cases) {
    const e = refusal(() => parseKeyArn(input));
    assert.equal(e.code, 'invalid_request', input);
    assert.equal(e.part, part, `${input}: ${e.message}`);
    assert.equal(typeof e.expected, 'string');
    assert.ok(e.found.length <= 70, 'what was found is shortened');
    assert.ok(!/[\u0000-\u001f\u202e]/.test(e.message), 'no control characters echoed');
  }
});

test('offline validation: parse and region in the server words, the rest skipped on failure', () => {
  const ok = offlineValidation(ARN, [], 'arn:aws:iam::111122223333:role/byok', '00ff');
  assert.deepEqual(ok.map((s) => [s.step, s.outcome]), [['parse identifier', 'pass'], ['region allowed', 'pass']]);
  const far = offlineValidation(ARN, ['us-east-1', 'us-west-2'], 'p', '00ff');
  assert.deepEqual(far.map((s) => s.outcome), ['pass', 'fail', 'skipped', 'skipped', 'skipped', 'skipped']);
  assert.equal(far[1].fix, 'use a key in one of: us-east-1, us-west-2');
  const bad = offlineValidation('arn:aws:kms:eu-west-1:1:key/x', [], 'p', '00ff');
  assert.equal(bad[0].outcome, 'fail');
  assert.match(bad[0].detail, /account/);
  assert.equal(bad.length, 6);
});

test('the grant: least privilege, bound to the org, the role trusted with the external id', () => {
  const vendor = 'arn:aws:iam::111122223333:role/byok';
  const direct = keyGrant({ keyArn: ARN, vendorPrincipal: vendor, externalId: 'ext-1', org: '00ff' });
  assert.equal(direct.principal, vendor);
  assert.deepEqual(direct.key_policy_statements[0].Action, ['kms:Encrypt', 'kms:Decrypt']);
  assert.equal(direct.key_policy_statements[0].Condition.StringEquals['kms:EncryptionContext:byok:org'], '00ff');
  assert.equal(direct.key_policy_statements[1].Action, 'kms:DescribeKey');
  assert.equal(direct.role_policy, null);
  assert.equal(direct.trust_policy, null);
  const role = 'arn:aws:iam::444455556666:role/byok-access';
  const via = keyGrant({ keyArn: ARN, roleArn: role, vendorPrincipal: vendor, externalId: 'ext-1', org: '00ff' });
  assert.equal(via.principal, role);
  assert.equal(via.role_policy.Statement[0].Resource, ARN);
  assert.deepEqual(via.trust_policy.Statement[0].Principal, { AWS: vendor });
  assert.equal(via.trust_policy.Statement[0].Condition.StringEquals['sts:ExternalId'], 'ext-1');
  assert.equal(refusal(() => keyGrant({ keyArn: ARN, roleArn: 'arn:aws:iam::1:role/x', vendorPrincipal: vendor,
    externalId: 'e', org: 'o' })).part, 'account');
  assert.equal(refusal(() => keyGrant({ keyArn: ARN })).code, 'invalid_request');
});

test('text too long, or not text, is refused before it is copied into the module', () => {
  // 64 Ki units is the most; a paste of 16 MiB would be copied whole, and a larger one that
  // does not fit the module's memory would abort it for good.
  const huge = 'a'.repeat(16 << 20);
  for (const f of [parseKeyArn, parseGcpKey, parseAzureKey]) {
    const e = refusal(() => f(huge));
    assert.equal(e.code, 'invalid_request');
    assert.equal(e.message, 'the key identifier is 16777216 characters long, over the 65536 it may have');
    assert.equal(refusal(() => f(42)).message, 'the key identifier must be a string');
  }
  const long = refusal(() => keyGrant({ keyArn: ARN, vendorPrincipal: huge, externalId: 'x', org: '00ff' }));
  assert.equal(long.message, 'vendorPrincipal is 16777216 characters long, over the 65536 it may have');
  const role = refusal(() => providerGrant({ provider: 'aws', key: ARN, org: '00ff', externalId: 'x', role: huge }));
  assert.equal(role.code, 'invalid_request');
  assert.match(role.message, /^role is 16777216 characters long/);
  assert.match(refusal(() => offlineValidation(ARN, [huge], 'p', '00ff')).message, /^a region is 16777216/);
  assert.match(refusal(() => offlineValidation(ARN, Array(257).fill('eu-west-1'), 'p', '00ff')).message,
    /^regions has 257 entries/);
  assert.match(refusal(() => offlineValidation(ARN, 'eu-west-1', 'p', '00ff')).message, /^regions must be an array/);
  // Regions whose reading throws (a getter, a proxy's trap, on an entry or on `length`; a
  // revoked proxy, which `Array.isArray` throws for) are refused: the exception does not unwind through the module, which goes on working.
  const getter = ['eu-west-1'];
  Object.defineProperty(getter, 0, { get() { throw new Error('boom'); } });
  const trapped = new Proxy(['eu-west-1'], {
    get(t, k) {
      if (k === 'length') throw new Error('boom');
      return t[k];
    },
  });
  const revocable = Proxy.revocable(['eu-west-1'], {});
  revocable.revoke();
  for (const regions of [getter, trapped, revocable.proxy]) {
    const e = refusal(() => offlineValidation(ARN, regions, 'p', '00ff'));
    assert.equal(e.code, 'invalid_request');
    assert.equal(e.message, 'regions could not be read');
  }
  for (let i = 0; i < 2000; i++) offlineValidation(ARN, ['eu-west-1'], 'p', '00ff');
  // At the limit: read (and refused by the parser for what it is, not for its size).
  const atLimit = refusal(() => parseKeyArn('a'.repeat(65536)));
  assert.doesNotMatch(atLimit.message, /characters long/);
});
