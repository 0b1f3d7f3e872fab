// Building the page's DOM. Every value from the server or the user goes in as text
// (`textContent`), never as HTML: the page has no `innerHTML`, so nothing an org names a scope
// or a key can run as script, whatever the CSP.
import { ApiError } from './api.js';

/** `h('p', { class: 'x', on: { click } }, 'text', child)`: an element. Attributes are set as
 * attributes (`for`, `aria-*`, `data-*`); `on` holds listeners; strings become text nodes;
 * `null`, `undefined` and `false` children are skipped. */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (k === 'on') {
      for (const [event, fn] of Object.entries(v)) el.addEventListener(event, fn);
    } else if (v === true) {
      el.setAttribute(k, '');
    } else if (v !== false && v != null) {
      el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces `el`'s children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let ids = 0;
/** A fresh element id with `prefix`, to tie labels, fields and their messages together. */
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A time (ms since the epoch) as the reader's local date and time; `never` for none. */
export function when(ms, none = 'never') {
  if (ms == null) return none;
  return new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

/** A duration in ms, in words: `90 s`, `5 min`, `2 h`; `0 s` stays `0 s` (no cache). */
export function duration(ms) {
  if (ms < 1000) return `${ms} ms`;
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  const min = Math.round(s / 60);
  if (min < 120) return `${min} min`;
  return `${Math.round(min / 60)} h`;
}

/** A field's message slot: `show(text)` puts the message beside the field and marks it
 * invalid for screen readers; `clear()` removes both. */
export function fieldMessage(field) {
  const msg = h('p', { class: 'field-error', id: `${field.id}-error`, hidden: true });
  const describedBy = (field.getAttribute('aria-describedby') ?? '').split(' ').filter(Boolean);
  field.setAttribute('aria-describedby', [...describedBy, msg.id].join(' '));
  return {
    el: msg,
    show(text) {
      msg.textContent = text;
      msg.hidden = false;
      field.setAttribute('aria-invalid', 'true');
    },
    clear() {
      msg.textContent = '';
      msg.hidden = true;
      field.removeAttribute('aria-invalid');
    },
  };
}

/** Whether refusal `err` is the fault of what was typed in a field: its code is one of `codes`
 * (by default `invalid_request`). Anything else (a rate limit, the server or the KMS away, a
 * quota, a job running) is not: shown beside the field, it would mark the field invalid for
 * screen readers and send the admin to correct what is right. */
export function fieldFault(err, codes = ['invalid_request']) {
  return err instanceof ApiError && codes.includes(err.code);
}

/** A paragraph `#id` announcing refusal `err` (`lead` before it), for a section's result
 * line: focusable from script, not in the Tab order. */
export function errorLine(id, err, lead = '') {
  const line = h('p', { role: 'alert', id, tabindex: -1 });
  showError(line, err);
  if (lead) line.prepend(lead);
  return line;
}

/** Shows refusal `err` in `el` (a status region), not beside any field: `message (code)`. */
export function showError(el, err) {
  el.classList.add('error');
  el.textContent = err instanceof ApiError ? err.text : String(err);
}

/** A button that copies `text()` to the clipboard and says so (`Copied`), for policies and
 * tokens. Where the clipboard is refused, it selects `target` so that the reader can copy. */
export function copyButton(label, text, target) {
  const status = h('span', { class: 'copy-status', role: 'status' });
  const button = h('button', {
    type: 'button',
    class: 'secondary',
    on: {
      click: async () => {
        try {
          await navigator.clipboard.writeText(text());
          status.textContent = 'Copied.';
        } catch {
          if (target) {
            const range = document.createRange();
            range.selectNodeContents(target);
            getSelection().removeAllRanges();
            getSelection().addRange(range);
          }
          status.textContent = 'Select and copy it (the browser refused the clipboard).';
        }
      },
    },
  }, label);
  return h('span', { class: 'copy' }, button, status);
}

/** A button for an action that cannot be undone, in two presses: the first arms it (its text
 * becomes `armedLabel`, and `onArm()` says what the second press does); the second runs
 * `act()`, the button disabled until it ends, so that it is sent once. A double-click is one
 * press (its second click, `detail` 2, is not a confirmation), and an armed button disarms when
 * focus leaves it (`onDisarm()` then takes back what `onArm()` said). Keyboard presses (Enter,
 * Space) count as presses. */
export function twoPress(props, label, armedLabel, onArm, act, onDisarm = () => {}) {
  const disarm = () => {
    delete b.dataset.armed;
    b.textContent = label;
  };
  const b = h('button', { type: 'button', class: 'danger', ...props, on: {
    click: async (e) => {
      if (b.disabled || e.detail > 1) return;
      if (b.dataset.armed !== 'true') {
        b.dataset.armed = 'true';
        b.textContent = armedLabel;
        onArm();
        return;
      }
      disarm();
      b.disabled = true;
      try {
        await act();
      } finally {
        b.disabled = false;
      }
    },
    blur: () => {
      if (b.dataset.armed !== 'true') return;
      disarm();
      onDisarm();
    },
  } }, label);
  return b;
}

/** Runs `act()` with `button` disabled, unless it is already running: a form submitted twice
 * (Enter pressed twice) sends its call once. */
export async function once(button, act) {
  if (button.disabled) return;
  button.disabled = true;
  try {
    await act();
  } finally {
    button.disabled = false;
  }
}
