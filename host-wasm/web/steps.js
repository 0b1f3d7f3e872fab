// A validation report (the server's `steps`, or the offline ones from the wasm package) as a
// list: each step pass / fail / skipped, what was found, and the fix for a failure.
import { h } from './dom.js';

const MARK = { pass: '✓ pass', fail: '✗ fail', skipped: '– skipped' };

export function stepsList(steps) {
  return h('ol', { class: 'steps' }, steps.map((s) => h('li', { class: `step-${s.outcome}`, 'data-step': s.step },
    h('span', { class: 'outcome' }, MARK[s.outcome] ?? s.outcome), ' ',
    h('strong', {}, s.step), `: ${s.detail}`,
    s.fix ? h('p', { class: 'fix' }, h('strong', {}, 'Fix: '), s.fix) : null)));
}
