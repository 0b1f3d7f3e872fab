// Add a key: the provider (AWS KMS, Google Cloud KMS or Azure Key Vault) and its steps; the
// identifier parsed by the wasm module as it is typed (region, account, key or alias; project,
// location, ring, key; vault, cloud, key; or what is wrong and why); the exact grant for this org, generated in the browser by core's
// own function, with a copy button and the commands; "Validate" runs the server's live checks,
// each step with its fix; "Add" attaches the key.
import { ApiError } from './api.js';
import { copyButton, errorLine, fieldFault, fieldMessage, fill, h } from './dom.js';
import { stepsList } from './steps.js';

export async function render(section, { session, wasm, banner, go }) {
  const org = session.who.org;
  const name = h('input', { id: 'key-name', name: 'name', required: true, value: 'prod', autocomplete: 'off', maxlength: 64 });
  const arn = h('input', { id: 'key-arn', name: 'key_arn', required: true, autocomplete: 'off', spellcheck: 'false',
    placeholder: 'arn:aws:kms:eu-west-1:111122223333:key/…', 'aria-describedby': 'key-arn-parsed', class: 'mono' });
  const role = h('input', { id: 'role-arn', name: 'role_arn', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'arn:aws:iam::111122223333:role/…', 'aria-describedby': 'role-arn-hint', class: 'mono' });
  // GCP: the customer's workload identity pool provider that trusts byok's issuer; Azure: the
  // customer's tenant (optional: byok learns it from the vault's challenge).
  const audience = h('input', { id: 'audience', name: 'audience', autocomplete: 'off', spellcheck: 'false', class: 'mono',
    placeholder: '//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/…/providers/…' });
  const providerAws = h('input', { type: 'radio', name: 'provider', value: 'aws', id: 'provider-aws', checked: true });
  const providerGcp = h('input', { type: 'radio', name: 'provider', value: 'gcp', id: 'provider-gcp' });
  const providerAzure = h('input', { type: 'radio', name: 'provider', value: 'azure', id: 'provider-azure' });
  const kind = () => (providerGcp.checked ? 'gcp' : providerAzure.checked ? 'azure' : 'aws');
  // How byok assumes the role: its own OIDC token (no secret on the vendor's side; offered
  // first when byok is an issuer) or the org's external id.
  const trustOidc = h('input', { type: 'radio', name: 'role_trust', value: 'oidc', id: 'trust-oidc' });
  const trustExt = h('input', { type: 'radio', name: 'role_trust', value: 'external_id', id: 'trust-external-id', checked: true });
  const trustBox = h('fieldset', { id: 'role-trust', hidden: true },
    h('legend', {}, 'How byok assumes the role'),
    h('label', { class: 'choice', for: 'trust-oidc' }, trustOidc, " With byok's OIDC token (no vendor secret)"),
    h('label', { class: 'choice', for: 'trust-external-id' }, trustExt, ' With the external id'));
  const roleTrust = () => (trustOidc.checked ? 'oidc' : 'external_id');
  const nameMsg = fieldMessage(name);
  const arnMsg = fieldMessage(arn);
  const roleMsg = fieldMessage(role);
  const audienceMsg = fieldMessage(audience);
  const keyLabel = h('label', { for: 'key-arn' }, 'Key ARN or alias ARN');
  const roleLabel = h('label', { for: 'role-arn' }, 'Role ARN (optional)');
  const roleHint = h('p', { class: 'hint', id: 'role-arn-hint' }, 'Only if byok should assume a role in your account instead of being granted in the key policy.');
  const audienceLabel = h('label', { for: 'audience' }, 'Workload identity pool provider');
  const audienceText = h('p', { class: 'hint' }, "The pool provider in your project that trusts byok's issuer: byok then holds no secret of yours.");
  const audienceBox = h('div', { id: 'audience-box', hidden: true },
    audienceLabel, audience,
    audienceText, audienceMsg.el);
  const parsed = h('div', { id: 'key-arn-parsed', class: 'parsed', 'aria-live': 'polite' });
  const grantBox = h('div', { id: 'grant' });
  const report = h('div', { id: 'report', 'aria-live': 'polite' });
  const result = h('div', { id: 'add-result', role: 'status' });
  const validate = h('button', { type: 'button', id: 'validate', class: 'secondary', disabled: true }, 'Validate');
  const add = h('button', { type: 'submit', id: 'add', disabled: true }, 'Add the key');

  // The vendor's principal and the org's external id, from the server once: what the grant
  // needs besides the identifier. Everything else is computed here as the admin types.
  // A server without AWS configured answers `not_configured`: kept too, so that typing does
  // not ask again at every keystroke.
  let vendor = null;
  let notConfigured = null;
  const vendorFor = async (keyArn) => {
    if (notConfigured) throw notConfigured;
    if (!vendor) {
      try {
        const p = await session.call('GET', session.org(`/keys/policy?key_arn=${encodeURIComponent(keyArn)}`));
        vendor = { principal: p.principal, externalId: p.external_id, issuer: p.issuer ?? '' };
        // byok assumes roles with its own OIDC token when it is an issuer: offered first.
        if (vendor.issuer) trustOidc.checked = true;
        trustBox.hidden = !role.value.trim();
      } catch (e) {
        if (e instanceof ApiError && e.code === 'not_configured') notConfigured = e;
        throw e;
      }
    }
    return vendor;
  };

  // For Google Cloud and Azure: byok's issuer, this org's subject and the vendor's principals, from the
  // server once (the grant itself is computed here by core, as the admin types).
  let facts = null;
  const factsFor = async () => {
    facts ??= await session.call('GET', session.org('/keys/grant-facts'));
    return facts;
  };

  let current = null;
  // Each edit of the identifier, role or audience is a generation: an answer (a grant's facts,
  // a validation) to an older one is dropped, so that a report never shows under a key it was
  // not made for.
  let generation = 0;
  // Validate and Add run one at a time each: typing meanwhile does not enable them again.
  let validating = false;
  let adding = false;
  const ready = (yes) => {
    validate.disabled = !yes || validating;
    add.disabled = !yes || adding;
  };
  async function onInput() {
    const started = performance.now();
    generation += 1;
    const mine = generation;
    arnMsg.clear();
    roleMsg.clear();
    audienceMsg.clear();
    fill(report);
    const text = arn.value.trim();
    current = null;
    ready(false);
    if (!text) {
      fill(parsed, h('p', { class: 'hint' }, CLOUDS[kind()]?.empty ?? 'Paste a key ARN or an alias ARN.'));
      fill(grantBox);
      return;
    }
    if (CLOUDS[kind()]) return onCloudInput(CLOUDS[kind()], text, mine, started);
    let key;
    try {
      key = wasm.parseKeyArn(text);
    } catch (e) {
      badIdentifier(e, started);
      return;
    }
    current = key;
    fill(parsed, h('dl', { class: 'facts' },
      h('dt', {}, 'Partition'), h('dd', {}, key.partition),
      h('dt', {}, 'Region'), h('dd', { 'data-field': 'region' }, key.region),
      h('dt', {}, 'Account'), h('dd', { 'data-field': 'account' }, key.account),
      h('dt', {}, key.kind === 'alias' ? 'Alias' : 'Key id'), h('dd', { 'data-field': 'name' }, key.name),
      h('dt', {}, 'byok will call'), h('dd', { class: 'mono' }, key.endpoint)));
    parsed.dataset.ms = (performance.now() - started).toFixed(2);
    ready(true);
    let v;
    try {
      v = await vendorFor(key.key_id);
    } catch (e) {
      if (mine === generation) fill(grantBox, h('p', { class: 'error' }, `The grant could not be prepared: ${e instanceof ApiError ? e.text : e}`));
      return;
    }
    if (mine !== generation) return;
    const roleArn = role.value.trim() || undefined;
    let grant;
    try {
      trustBox.hidden = !roleArn;
      grant = wasm.keyGrant({ keyArn: key.key_id, roleArn, vendorPrincipal: v.principal, externalId: v.externalId,
        org, roleTrust: roleTrust(), issuer: v.issuer });
    } catch (e) {
      roleMsg.show(`${e.message} (${e.code ?? 'invalid_request'})`);
      fill(grantBox);
      // Nothing to validate or add until the role is fixed (the answers of calls under way
      // enable nothing).
      current = null;
      ready(false);
      return;
    }
    showGrant(key, grant, roleArn);
  }

  // The identifier did not parse: the message beside the field, the part at fault below it.
  function badIdentifier(e, started) {
    arnMsg.show(`${e.message} (${e.code ?? 'invalid_request'})`);
    fill(parsed, e.part ? h('p', { class: 'hint' }, `At fault: the ${e.part}` +
      (e.found ? ` (found “${e.found}”)` : '') + (e.expected ? `. Expected: ${e.expected}` : '')) : null);
    fill(grantBox);
    parsed.dataset.ms = (performance.now() - started).toFixed(2);
  }

  // The providers whose grant is computed by `providerGrant` alone: what each parses, shows and
  // says. AWS has its own flow (key policy statements, the role's trust).
  const CLOUDS = {
    gcp: {
      name: 'gcp',
      empty: 'Paste the key name (projects/…/cryptoKeys/…).',
      parse: (t) => wasm.parseGcpKey(t),
      facts: (key) => [
        h('dt', {}, 'Project'), h('dd', { 'data-field': 'project' }, key.project),
        h('dt', {}, 'Location'), h('dd', { 'data-field': 'location' }, key.location),
        h('dt', {}, 'Key ring'), h('dd', { 'data-field': 'key-ring' }, key.key_ring),
        h('dt', {}, 'Key'), h('dd', { 'data-field': 'name' }, key.crypto_key),
        ...(key.version ? [h('dt', {}, 'Version'), h('dd', {}, `${key.version} (byok keeps the key: decrypt picks the version, encrypt the primary)`)] : []),
      ],
      policyLabel: 'IAM bindings on the key',
      intro: (g, aud) => (aud
        ? `Your pool provider trusts byok's issuer for this org only; ${g.principal} gets these roles on the key:`
        : `Grant ${g.principal} these roles on the key:`),
      copyPolicy: 'Copy the IAM bindings',
      trustLabel: 'Service account binding',
      trustHeading: 'On the service account: who may impersonate it',
      copyTrust: 'Copy the service account binding',
      tools: "With gcloud and byok's CLI:",
    },
    azure: {
      name: 'azure',
      empty: 'Paste the key URL (https://…vault.azure.net/keys/…).',
      parse: (t) => wasm.parseAzureKey(t),
      facts: (key) => [
        h('dt', {}, key.service === 'vault' ? 'Vault' : 'Managed HSM'), h('dd', { 'data-field': 'vault' }, key.vault),
        h('dt', {}, 'Cloud'), h('dd', { 'data-field': 'cloud' }, key.cloud),
        h('dt', {}, 'Key'), h('dd', { 'data-field': 'name' }, key.name),
        ...(key.version ? [h('dt', {}, 'Version'), h('dd', {}, `${key.version} (byok keeps the key: each copy names the version that made it)`)] : []),
        h('dt', {}, 'byok wraps with'), h('dd', { 'data-field': 'algorithm' }, key.algorithm),
      ],
      policyLabel: 'Role assignment on the key',
      intro: (g) => `Assign your app ${g.principal} this role on the key only (or, on a vault with access policies, these key permissions):`,
      copyPolicy: 'Copy the role assignment',
      trustLabel: 'Federated credential',
      trustHeading: "On your app registration: the federated credential trusting byok's issuer for this org",
      copyTrust: 'Copy the federated credential',
      tools: "With the Azure CLI and byok's CLI:",
    },
  };

  async function onCloudInput(cloud, text, mine, started) {
    let key;
    try {
      key = cloud.parse(text);
    } catch (e) {
      badIdentifier(e, started);
      return;
    }
    current = key;
    fill(parsed, h('dl', { class: 'facts' }, ...cloud.facts(key),
      h('dt', {}, 'byok will call'), h('dd', { class: 'mono' }, key.endpoint)));
    parsed.dataset.ms = (performance.now() - started).toFixed(2);
    ready(true);
    let f;
    try {
      f = await factsFor();
    } catch (e) {
      if (mine === generation) fill(grantBox, h('p', { class: 'error' }, `The grant could not be prepared: ${e instanceof ApiError ? e.text : e}`));
      return;
    }
    if (mine !== generation) return;
    const who = role.value.trim() || undefined;
    const aud = audience.value.trim() || undefined;
    let grant;
    try {
      grant = wasm.providerGrant({ provider: cloud.name, key: key.key, role: who, audience: aud, org,
        externalId: f.external_id, issuerUrl: f.issuer_url ?? undefined, vendorPrincipal: f.vendor_principals[cloud.name] });
    } catch (e) {
      const msg = `${e.message} (${e.code ?? 'invalid_request'})`;
      if (/service account|client id|app registration/i.test(e.message)) roleMsg.show(msg);
      else audienceMsg.show(msg);
      fill(grantBox);
      current = null;
      ready(false);
      return;
    }
    showCloudGrant(cloud, key, grant, who, aud);
  }

  function showCloudGrant(cloud, key, grant, who, aud) {
    const policy = JSON.stringify(grant.key_policy_statements, null, 2);
    const policyPre = h('pre', { id: 'key-policy', class: 'code', tabindex: 0, 'aria-label': cloud.policyLabel }, policy);
    const flags = `--provider ${cloud.name} --key ${sh(key.key)}${who ? ` --role ${sh(who)}` : ''}${aud ? ` --audience ${sh(aud)}` : ''}`;
    const cli = [
      ...grant.commands,
      `byok key validate --org ${org} ${flags}`,
      `byok key add --org ${org} --name ${sh(name.value.trim() || 'prod')} ${flags}`,
    ].join('\n');
    const cliPre = h('pre', { id: 'key-cli', class: 'code', tabindex: 0, 'aria-label': 'Commands' }, cli);
    const parts = [
      h('h3', {}, '3. Grant byok use of the key'),
      h('p', {}, cloud.intro(grant, aud)),
      policyPre, copyButton(cloud.copyPolicy, () => policy, policyPre),
    ];
    if (grant.trust_policy) {
      const tp = JSON.stringify(grant.trust_policy, null, 2);
      const tpPre = h('pre', { id: 'trust-policy', class: 'code', tabindex: 0, 'aria-label': cloud.trustLabel }, tp);
      parts.push(h('h4', {}, cloud.trustHeading), tpPre, copyButton(cloud.copyTrust, () => tp, tpPre));
    }
    parts.push(h('p', {}, cloud.tools), cliPre, copyButton('Copy the commands', () => cli, cliPre));
    fill(grantBox, parts);
  }

  function showGrant(key, grant, roleArn) {
    const statements = JSON.stringify(grant.key_policy_statements, null, 2);
    const policyPre = h('pre', { id: 'key-policy', class: 'code', tabindex: 0, 'aria-label': 'Key policy statements' }, statements);
    // The key policy belongs to the key, not the alias: an alias is resolved first.
    const keyRef = key.kind === 'alias'
      ? `KEY=$(aws kms describe-key --region ${key.region} --key-id ${key.key_id} --query KeyMetadata.Arn --output text)`
      : `KEY=${key.key_id}`;
    // A role trusting byok's issuer needs the account's IAM OIDC provider for it, once.
    const provider = roleArn && roleTrust() === 'oidc' && vendor?.issuer
      ? [`aws iam create-open-id-connect-provider --url https://${vendor.issuer} --client-id-list sts.amazonaws.com`]
      : [];
    const cli = [
      ...provider,
      keyRef,
      `aws kms get-key-policy --region ${key.region} --key-id "$KEY" --policy-name default --query Policy --output text > policy.json`,
      '# add the statements above to "Statement" in policy.json, then:',
      `aws kms put-key-policy --region ${key.region} --key-id "$KEY" --policy-name default --policy file://policy.json`,
      `byok key validate --org ${org} --key-arn ${key.key_id}${roleArn ? ` --role-arn ${sh(roleArn)} --role-trust ${roleTrust()}` : ''}`,
      `byok key add --org ${org} --name ${sh(name.value.trim() || 'prod')} --key-arn ${key.key_id}${roleArn ? ` --role-arn ${sh(roleArn)} --role-trust ${roleTrust()}` : ''}`,
    ].join('\n');
    const cliPre = h('pre', { id: 'key-cli', class: 'code', tabindex: 0, 'aria-label': 'Commands' }, cli);
    const parts = [
      h('h3', {}, '3. Grant byok use of the key'),
      h('p', {}, roleArn
        ? 'byok will assume your role. Add these statements to the key policy, give the role the permissions policy, and let byok assume it with the trust policy:'
        : `Add these statements to the key's key policy. They let ${grant.principal} use the key only for this org (the encryption context names it):`),
      policyPre, copyButton('Copy the key policy statements', () => statements, policyPre),
    ];
    if (grant.role_policy) {
      const rp = JSON.stringify(grant.role_policy, null, 2);
      const tp = JSON.stringify(grant.trust_policy, null, 2);
      const rpPre = h('pre', { id: 'role-policy', class: 'code', tabindex: 0, 'aria-label': 'Role permissions policy' }, rp);
      const tpPre = h('pre', { id: 'trust-policy', class: 'code', tabindex: 0, 'aria-label': 'Role trust policy' }, tp);
      parts.push(h('h4', {}, 'The role\'s permissions policy'), rpPre, copyButton('Copy the permissions policy', () => rp, rpPre),
        h('h4', {}, 'The role\'s trust policy'), tpPre, copyButton('Copy the trust policy', () => tp, tpPre));
    }
    parts.push(h('p', {}, 'With the AWS CLI and byok\'s CLI:'), cliPre, copyButton('Copy the commands', () => cli, cliPre));
    fill(grantBox, parts);
  }

  const body = () => (CLOUDS[kind()]
    ? { provider: kind(), key: arn.value.trim(), role: role.value.trim() || null, audience: audience.value.trim() || null }
    : { provider: 'aws', key: arn.value.trim(), role: role.value.trim() || null,
      role_trust: role.value.trim() ? roleTrust() : null });

  validate.addEventListener('click', async () => {
    if (validating || !current) return;
    validating = true;
    ready(true);
    validate.setAttribute('aria-busy', 'true');
    const mine = generation;
    fill(report, h('p', {}, 'Validating with your KMS…'));
    try {
      const r = await session.call('POST', session.org('/keys/validate'), body());
      // The identifier changed meanwhile: this report is of the key typed before.
      if (mine !== generation) return;
      fill(report, h('p', { class: r.ok ? 'ok' : 'error', id: 'report-summary' },
        r.ok ? 'Every check passed: the key is ready to add.' : 'A check failed. Its fix is below; validate again once it is done.'),
      stepsList(r.steps));
    } catch (e) {
      if (e instanceof ApiError && e.code === 'unauthenticated') throw e;
      if (mine === generation) showRefusal(e);
    } finally {
      validating = false;
      validate.removeAttribute('aria-busy');
      ready(current != null);
    }
  });

  // A refusal where it belongs: a failed validation as its report; what names a field's
  // mistake (`invalid_request`, the key attached already or refused by its KMS) beside that
  // field; anything else (a rate limit, byok or the KMS away, a job running) in the result
  // line, with no field marked invalid.
  const KEY_FAULTS = ['key_exists', 'key_proof_failed', 'kms_access_denied', 'kms_key_disabled', 'kms_key_not_found',
    'kms_key_pending_deletion', 'kms_invalid_ciphertext'];
  // Returns where the admin should look: the report, the field, or the result line.
  function showRefusal(e) {
    fill(report);
    fill(result);
    if (e instanceof ApiError && e.code === 'key_validation_failed' && Array.isArray(e.details)) {
      const summary = h('p', { class: 'error', id: 'report-summary', tabindex: -1 }, `${e.text}. Its fix is below.`);
      fill(report, summary, stepsList(e.details));
      return summary;
    }
    if (fieldFault(e)) {
      const [msg, field] = /name/.test(e.message) && !/arn/i.test(e.message) ? [nameMsg, name]
        : /role|service account|client id|app registration/i.test(e.message) ? [roleMsg, role]
          : /workload identity|tenant/i.test(e.message) ? [audienceMsg, audience] : [arnMsg, arn];
      msg.show(e.text);
      return field;
    }
    if (fieldFault(e, KEY_FAULTS)) {
      arnMsg.show(e.text);
      return arn;
    }
    const line = errorLine('add-error', e);
    fill(result, line);
    return line;
  }

  const awsSteps = h('details', { open: true, id: 'aws-steps' }, h('summary', {}, 'In AWS: prepare the key'),
    h('ol', {},
      h('li', {}, 'In the AWS console, open Key Management Service in the region that should hold the key.'),
      h('li', {}, 'Create a key (or pick one): symmetric, "Encrypt and decrypt", single- or multi-Region.'),
      h('li', {}, 'Copy its key ARN (or an alias ARN) and paste it below.'),
      h('li', {}, 'Add the statements this page generates to the key policy; byok uses the key only for this org.')));
  const gcpSteps = h('details', { open: true, id: 'gcp-steps', hidden: true }, h('summary', {}, 'In Google Cloud: prepare the key'),
    h('ol', {},
      h('li', {}, 'In the Cloud console, open Security › Key Management in the project and location that should hold the key.'),
      h('li', {}, 'Create a key ring and a key (or pick one) with purpose "Symmetric encrypt/decrypt".'),
      h('li', {}, 'Copy its resource name (projects/…/cryptoKeys/…) and paste it below.'),
      h('li', {}, "Create a workload identity pool provider trusting byok's issuer for this org (the commands below), then paste its name."),
      h('li', {}, 'Grant the roles this page generates on the key; byok then holds no secret of yours.')));
  const azureSteps = h('details', { open: true, id: 'azure-steps', hidden: true }, h('summary', {}, 'In Azure: prepare the key'),
    h('ol', {},
      h('li', {}, 'In the Azure portal, open the Key Vault (or Managed HSM) that should hold the key.'),
      h('li', {}, 'Create a key (or pick one): RSA in a vault, oct-HSM (AES) in a Managed HSM, with the operations "Wrap Key" and "Unwrap Key".'),
      h('li', {}, 'Copy its key identifier (https://…/keys/…) and paste it below.'),
      h('li', {}, "In Microsoft Entra ID, pick or register an app; give it the federated credential this page generates, which trusts byok's issuer for this org only."),
      h('li', {}, 'Assign that app the role this page generates, on the key only; byok then holds no secret of yours.')));
  const form = h('form', { id: 'add-key-form', novalidate: true, on: { submit: async (e) => {
    e.preventDefault();
    nameMsg.clear();
    if (!name.value.trim()) {
      nameMsg.show('Give the key a name (invalid_request)');
      name.focus();
      return;
    }
    if (adding || !current) return;
    adding = true;
    ready(true);
    const mine = generation;
    fill(result, h('p', {}, 'Validating and attaching…'));
    try {
      const added = await session.call('POST', session.org('/keys'), { name: name.value.trim(), ...body() });
      const id = added.key.id;
      banner?.refresh();
      const makeDefault = h('button', { type: 'button', id: 'make-default', on: { click: async () => {
        if (makeDefault.disabled) return;
        makeDefault.disabled = true;
        try {
          await session.call('POST', session.org(`/keys/${id}/default`));
          fill(result, h('p', { class: 'ok' }, `“${added.key.name}” (${id}) is attached and is the default. `,
            h('a', { href: '#keys' }, 'See your keys'), '.'));
        } catch (err) {
          makeDefault.disabled = false;
          if (err instanceof ApiError && err.code === 'unauthenticated') throw err;
          fill(result, h('p', { class: 'error', role: 'alert' }, err instanceof ApiError ? err.text : String(err)), makeDefault);
        }
        result.querySelector('a, button:not([disabled])')?.focus();
      } } }, 'Make it the default');
      // The key is attached, whatever was typed since: said, with the name it was added as.
      fill(result, h('p', { class: 'ok' }, `Attached as ${id}. New data keeps using the current default until you change it.`),
        makeDefault, ' ', h('a', { href: '#keys' }, 'See your keys'));
      makeDefault.focus();
      if (Array.isArray(added.validation) && mine === generation) fill(report, stepsList(added.validation));
    } catch (err) {
      if (err instanceof ApiError && err.code === 'unauthenticated') throw err;
      if (mine === generation) {
        showRefusal(err).focus();
      } else {
        // The identifier changed while the key was being added: the refusal is of the key
        // typed before. Said in the result line only; no field marked, focus left where the
        // admin is typing.
        fill(result, errorLine('add-error', err, 'The key typed before was not added: '));
      }
    } finally {
      adding = false;
      ready(current != null);
    }
  } } },
  h('fieldset', {}, h('legend', {}, '1. Where your key lives'),
    h('label', { class: 'choice', for: 'provider-aws' }, providerAws, ' AWS KMS'),
    h('label', { class: 'choice', for: 'provider-gcp' }, providerGcp, ' Google Cloud KMS'),
    h('label', { class: 'choice', for: 'provider-azure' }, providerAzure, ' Azure Key Vault')),
  awsSteps, gcpSteps, azureSteps,
  h('h3', {}, '2. Identify the key'),
  h('label', { for: 'key-name' }, 'Name (how this page and the audit log call it)'), name, nameMsg.el,
  keyLabel, arn, arnMsg.el, parsed,
  roleLabel, role, trustBox, roleHint, roleMsg.el, audienceBox,
  grantBox,
  h('h3', {}, '4. Check and add'),
  h('p', { class: 'toolbar' }, validate, add),
  report, result);

  arn.addEventListener('input', onInput);
  role.addEventListener('input', onInput);
  audience.addEventListener('input', onInput);
  // Switching the provider relabels the fields and shows that cloud's steps.
  const LABELS = {
    aws: { key: 'Key ARN or alias ARN', keyHint: 'arn:aws:kms:eu-west-1:111122223333:key/…',
      role: 'Role ARN (optional)', roleHint: 'arn:aws:iam::111122223333:role/…',
      roleText: 'Only if byok should assume a role in your account instead of being granted in the key policy.' },
    gcp: { key: 'Key name', keyHint: 'projects/my-project/locations/europe-west1/keyRings/…/cryptoKeys/…',
      role: 'Service account (optional)', roleHint: 'byok-access@my-project.iam.gserviceaccount.com',
      roleText: 'Only if byok should impersonate a service account of yours (through the pool provider) instead of being granted on the key itself.',
      audience: 'Workload identity pool provider',
      audienceText: "The pool provider in your project that trusts byok's issuer: byok then holds no secret of yours.",
      audienceHint: '//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/…/providers/…' },
    azure: { key: 'Key URL', keyHint: 'https://my-vault.vault.azure.net/keys/…',
      role: 'App (client) id', roleHint: '00000000-0000-0000-0000-000000000000',
      roleText: "Your app registration byok signs in as, with a federated credential that trusts byok's issuer (no secret).",
      audience: 'Tenant id (optional)', audienceHint: 'byok learns it from the vault when left empty',
      audienceText: "Your Microsoft Entra tenant (a GUID, or its verified domain); without it byok asks the vault, and only trusts an answer from your key's cloud." },
  };
  const relabel = () => {
    const k = kind();
    const l = LABELS[k];
    awsSteps.hidden = k !== 'aws';
    gcpSteps.hidden = k !== 'gcp';
    azureSteps.hidden = k !== 'azure';
    audienceBox.hidden = !l.audience;
    trustBox.hidden = k !== 'aws' || !role.value.trim();
    keyLabel.textContent = l.key;
    arn.placeholder = l.keyHint;
    roleLabel.textContent = l.role;
    role.placeholder = l.roleHint;
    roleHint.textContent = l.roleText;
    if (l.audience) {
      audienceLabel.textContent = l.audience;
      audience.placeholder = l.audienceHint;
      audienceText.textContent = l.audienceText;
    }
    onInput();
  };
  providerAws.addEventListener('change', relabel);
  providerGcp.addEventListener('change', relabel);
  providerAzure.addEventListener('change', relabel);
  trustOidc.addEventListener('change', onInput);
  trustExt.addEventListener('change', onInput);
  section.append(h('h2', {}, 'Add a key'), form);
  onInput();
}

/** `s` quoted for a POSIX shell: a key's name is the admin's text, and a command they paste
 * must not run any of it. */
function sh(s) {
  return `'${s.replaceAll("'", "'\\''")}'`;
}
