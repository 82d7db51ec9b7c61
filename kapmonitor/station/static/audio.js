// Alarm sounds with the Web Audio API, one pattern per priority (IEC 60601-1-8 ideas):
//   high:   10 pulses (3 + 2, twice), repeated every 8 s, 880 Hz fundamental with harmonics
//   medium: 3 pulses, repeated every 15 s, 660 Hz
//   low:    2 pulses, repeated every 30 s, 440 Hz
// Browsers start an AudioContext suspended until the user clicks: `armed` says whether sound
// can play; the page shows a loud AUDIO OFF warning while it cannot.

export const PATTERNS = {
  high: { freq: 880, pulses: [0, 0.2, 0.4, 0.8, 1.0, 2.0, 2.2, 2.4, 2.8, 3.0], every: 8, pulse: 0.15 },
  medium: { freq: 660, pulses: [0, 0.3, 0.6], every: 15, pulse: 0.2 },
  low: { freq: 440, pulses: [0, 0.4], every: 30, pulse: 0.25 },
};

export class Annunciator {
  constructor() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    this.ctx = Ctx ? new Ctx() : null;
    this.current = null; // priority now sounding
    this.nextAt = 0;
    this.onchange = () => {};
    if (this.ctx) this.ctx.onstatechange = () => this.onchange();
  }

  get armed() {
    return !!this.ctx && this.ctx.state === "running";
  }

  async arm() {
    if (!this.ctx) return false;
    try { await this.ctx.resume(); } catch (e) { /* still blocked */ }
    this.onchange();
    return this.armed;
  }

  // Call about once a second with the highest audible priority (or null).
  update(priority) {
    if (priority !== this.current) {
      this.current = priority;
      this.nextAt = 0; // a new or changed condition sounds at once
    }
    document.body.dataset.sounding = priority || "";
    if (!priority || !this.armed) return;
    const now = this.ctx.currentTime;
    if (now < this.nextAt) return;
    const p = PATTERNS[priority];
    this.play(p, now + 0.02);
    this.nextAt = now + p.every;
  }

  play(p, t0) {
    for (const dt of p.pulses) {
      for (const [mult, level] of [[1, 0.5], [2, 0.2], [3, 0.12], [4, 0.08]]) {
        const osc = this.ctx.createOscillator();
        const gain = this.ctx.createGain();
        osc.type = "sine";
        osc.frequency.value = p.freq * mult;
        const t = t0 + dt;
        gain.gain.setValueAtTime(0, t);
        gain.gain.linearRampToValueAtTime(level, t + 0.02);
        gain.gain.setValueAtTime(level, t + p.pulse - 0.03);
        gain.gain.linearRampToValueAtTime(0, t + p.pulse);
        osc.connect(gain).connect(this.ctx.destination);
        osc.start(t);
        osc.stop(t + p.pulse + 0.01);
      }
    }
  }
}
