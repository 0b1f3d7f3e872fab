// The banner shown while the org's re-encryption job runs (after a disable, an enable or a
// retirement): what it does, done of total, and what it waits on, updated live until it ends.
import { fill, h } from './dom.js';

const POLL_MS = 1000;

export class JobBanner {
  constructor(el, session) {
    this.el = el;
    this.session = session;
    this.timer = null;
    this.stopped = false;
    this.listeners = new Set();
    this.refresh();
  }

  /** Calls `fn()` when a job ends (the keys list re-reads its states). */
  onEnd(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Reads the job now and keeps polling while one runs. */
  async refresh() {
    clearTimeout(this.timer);
    if (this.stopped) return;
    let job = null;
    try {
      job = await this.session.call('GET', this.session.org('/job'));
    } catch (err) {
      // Said, not swallowed: the last progress shown is no longer known to be current.
      if (!this.stopped && this.el.dataset.running === 'true') {
        const why = err?.text ?? String(err);
        let note = this.el.querySelector('.job-stale');
        if (!note) {
          note = h('p', { class: 'warning job-stale' });
          this.el.querySelector('.banner')?.append(note);
        }
        note.textContent = `The job's progress could not be read (${why}); trying again.`;
      }
      this.timer = setTimeout(() => this.refresh(), POLL_MS * 5);
      return;
    }
    if (this.stopped) return;
    const wasRunning = this.el.dataset.running === 'true';
    if (!job) {
      fill(this.el);
      this.el.dataset.running = 'false';
      if (wasRunning) for (const fn of this.listeners) fn();
      return;
    }
    this.el.dataset.running = 'true';
    const label = `Re-encryption job: ${job.kind}`;
    fill(this.el, h('div', { class: 'banner' },
      h('p', {}, h('strong', {}, label), ` · ${job.done} of ${job.total} steps`),
      h('progress', { max: Math.max(job.total, 1), value: job.done, 'aria-label': label }),
      job.waiting_on
        ? h('p', { class: 'warning' },
          `Waiting on paused scope ${job.waiting_on}: it continues as soon as that scope is resumed.`)
        : h('p', {}, 'Running. Your data stays readable meanwhile.')));
    this.timer = setTimeout(() => this.refresh(), POLL_MS);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    fill(this.el);
  }
}
