// avedge kiosk display. Reads the kiosk's /stream (binary messages, see server.py), plays the
// audio through WebAudio and shows each frame when the sound of its time is heard, so the
// mouth and the voice stay in sync; measures what the viewer gets and posts it to /report.
//
// Timeline: stream time t (seconds of input audio) is played at audio-context time base + t.
// `base` is set when the first frame arrives, so that frame shows MARGIN seconds later: the
// sound is delayed by the kiosk's latency (plus MARGIN) instead of the face trailing it.
// Frames that keep arriving after their time, or far ahead of it, move `base` (a resync).
// Without a running AudioContext (autoplay refused: a button asks for a click) the same
// timeline runs on the page's clock, silent.
'use strict';

const MARGIN = 0.06;        // s between a frame's arrival and its time on screen (jitter)
const EARLY_SLACK = 0.12;   // s ahead of time for 2 s in a row: delay more than needed
const LATE_RUN = 5;         // frames in a row after their time: resync
const KEEP_AUDIO = 3.0;     // s of received audio kept to reschedule on a resync
const MAX_QUEUE = 75;       // decoded frames waiting for their time (3 s)

const statusEl = document.getElementById('status');
const canvas = document.getElementById('face');
const g2d = canvas.getContext('2d');
const soundBtn = document.getElementById('sound');

// Everything the page measured; the browser test reads window.kiosk.
const K = window.kiosk = {
  connected: false, ended: false, done: false, viewer: null, rate: 16000, fps: 25,
  framesReceived: 0, framesDrawn: 0, framesLate: 0, framesSkipped: 0, framesDropped: 0,
  audioChunks: 0, audioLate: 0, drawnIndex: -1, clock: 'none', audioState: 'none',
  audioTime: 0, latencyMs: null, latencyP95: null, avMs: null, fps_: 0, resyncs: 0,
  delayMs: null, error: null,
};

let actx = null;            // AudioContext
let base = null;            // timeline origin (audio-context s, or page s in 'wall' mode)
let queue = [];             // decoded frames waiting for their time, by index
let audio = [];             // {s, pcm: Float32Array} received, the last KEEP_AUDIO s
let sources = [];           // scheduled {node, at}
let lateRun = 0;
let leadMin = Infinity, leadSince = 0;
let shownNew = [];          // [index, latency ms, A/V ms] since the last report
let recentLat = [];
let recentNet = [], recentLead = [];
let drawTimes = [];
let endT = null;

const pageNow = () => performance.now() / 1000;
const epochMs = () => performance.timeOrigin + performance.now();

function audioRunning() { return actx !== null && actx.state === 'running'; }

// Seconds on the timeline's own clock: what is being heard now (audio mode) or page time.
function clockNow() {
  if (K.clock === 'audio') {
    let t = actx.currentTime;
    if (actx.getOutputTimestamp) {
      const o = actx.getOutputTimestamp();
      if (o.contextTime > 0 && o.performanceTime > 0) {
        t = o.contextTime + (performance.now() - o.performanceTime) / 1000;
      }
    }
    return t;
  }
  return pageNow();
}

function position() { return base === null ? null : clockNow() - base; }

function setupAudio() {
  try {
    actx = new AudioContext({ latencyHint: 'interactive' });
  } catch (e) {
    actx = null;
    K.error = 'no WebAudio: ' + e;
    return;
  }
  const check = () => {
    K.audioState = actx.state;
    soundBtn.style.display = actx.state === 'running' ? 'none' : 'block';
    if (base === null) return;
    const want = actx.state === 'running' ? 'audio' : 'wall';
    if (want !== K.clock) {
      // move the timeline to the other clock at the same position: the audio clock stops
      // while the context is suspended, the page's does not
      const pos = position();
      K.clock = want;
      rebase(clockNow() - pos);
    }
  };
  actx.onstatechange = check;
  actx.resume().catch(() => {}).finally(check);
  soundBtn.onclick = () => actx.resume().then(check);
  check();
}

// ---- audio
function scheduleChunk(c) {
  if (K.clock !== 'audio' || base === null) return;
  const dur = c.pcm.length / K.rate;
  const at = base + c.s / K.rate;
  const now = actx.currentTime;
  if (at + dur <= now) { K.audioLate += 1; return; }
  const buf = actx.createBuffer(1, c.pcm.length, K.rate);
  buf.copyToChannel(c.pcm, 0);
  const node = actx.createBufferSource();
  node.buffer = buf;
  node.connect(actx.destination);
  if (at >= now) node.start(at); else node.start(now, now - at);
  sources.push({ node, at });
  node.onended = () => { sources = sources.filter((x) => x.node !== node); };
}

function rebase(newBase) {
  base = newBase;
  if (K.clock === 'audio') {
    const now = actx.currentTime;
    for (const x of sources) if (x.at > now) { try { x.node.stop(); } catch (e) { /* */ } }
    sources = sources.filter((x) => x.at <= now);
    for (const c of audio) scheduleChunk(c);
  }
  K.delayMs = null;
  leadMin = Infinity;
  leadSince = pageNow();
}

function onAudio(meta, payload) {
  const n = payload.byteLength >> 1;
  const view = new DataView(payload.buffer, payload.byteOffset, n * 2);
  const pcm = new Float32Array(n);
  for (let k = 0; k < n; k++) pcm[k] = view.getInt16(2 * k, true) / 32768;
  const c = { s: meta.s, pcm };
  audio.push(c);
  const oldest = meta.s - KEEP_AUDIO * K.rate;
  while (audio.length && audio[0].s < oldest) audio.shift();
  K.audioChunks += 1;
  scheduleChunk(c);
}

// ---- frames
function onFrame(meta, payload) {
  K.framesReceived += 1;
  const blob = new Blob([payload], { type: 'image/jpeg' });
  createImageBitmap(blob).then((bmp) => {
    const f = { i: meta.i, t: meta.t, arr: meta.arr, ready: meta.ready, bmp };
    if (base === null) {
      K.clock = audioRunning() ? 'audio' : 'wall';
      rebase(clockNow() + MARGIN - f.t);
    }
    const pos = position();
    const lead = f.t - pos;                       // s until its time
    recentNet.push(epochMs() - f.ready);          // kiosk ready -> decoded here
    recentLead.push(lead * 1000);
    if (recentNet.length > 250) { recentNet.shift(); recentLead.shift(); }
    if (lead < -1 / K.fps) {                      // its time is over: late
      lateRun += 1;
      if (lateRun >= LATE_RUN) { rebase(clockNow() + MARGIN - f.t); K.resyncs += 1; lateRun = 0; }
    } else {
      lateRun = 0;
      leadMin = Math.min(leadMin, lead);
      if (pageNow() - leadSince > 2) {           // always early by more than needed: catch up
        if (leadMin > EARLY_SLACK) { rebase(base + leadMin - MARGIN); K.resyncs += 1; }
        leadMin = Infinity;
        leadSince = pageNow();
      }
    }
    let k = queue.length;
    while (k > 0 && queue[k - 1].i > f.i) k -= 1;
    queue.splice(k, 0, f);
    while (queue.length > MAX_QUEUE) {            // a stalled clock must not fill memory
      queue.shift().bmp.close();
      K.framesSkipped += 1;
    }
  }).catch((e) => { K.error = 'bad frame: ' + e; });
}

function tick() {
  const pos = position();
  if (pos !== null && queue.length) {
    let pick = null;
    while (queue.length && queue[0].t <= pos) {
      if (pick) { pick.bmp.close(); K.framesSkipped += 1; }
      pick = queue.shift();
    }
    if (pick) {
      if (canvas.width !== pick.bmp.width) { canvas.width = pick.bmp.width; canvas.height = pick.bmp.height; }
      g2d.drawImage(pick.bmp, 0, 0);
      pick.bmp.close();
      const lat = epochMs() - pick.arr;           // audio arrived at the kiosk -> on screen
      const av = (pos - pick.t) * 1000;            // sound of its time heard -> on screen
      if (av > 1000 / K.fps) K.framesLate += 1;
      K.framesDrawn += 1;
      K.drawnIndex = pick.i;
      K.latencyMs = lat;
      K.avMs = av;
      K.delayMs = K.delayMs === null ? lat : K.delayMs;
      shownNew.push([pick.i, Math.round(lat * 10) / 10, Math.round(av * 10) / 10]);
      recentLat.push(lat);
      if (recentLat.length > 250) recentLat.shift();
      drawTimes.push(pageNow());
    }
  }
  if (K.ended && !K.done && endT !== null && pos !== null && pos > endT + 0.2) {
    K.done = true;
    report();
  }
}

function frameLoop() { tick(); requestAnimationFrame(frameLoop); }
requestAnimationFrame(frameLoop);
setInterval(tick, 20);  // also where requestAnimationFrame is throttled (hidden, headless)

// ---- status and reports
function quantile(xs, q) {
  if (!xs.length) return null;
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

function updateStatus() {
  const now = pageNow();
  drawTimes = drawTimes.filter((t) => t > now - 1);
  K.fps_ = drawTimes.length;
  K.latencyP95 = quantile(recentLat, 0.95);
  if (actx) { K.audioState = actx.state; K.audioTime = actx.currentTime; }
  const parts = [];
  parts.push(K.done ? 'ended' : K.connected ? 'connected' : 'disconnected');
  parts.push(`${K.fps_} fps`);
  const med = quantile(recentLat, 0.5);
  parts.push(med === null ? 'latency –' : `latency ${med.toFixed(0)} ms (p95 ${K.latencyP95.toFixed(0)})`);
  if (K.avMs !== null) parts.push(`A/V ${K.avMs.toFixed(0)} ms`);
  parts.push(K.clock === 'audio' ? `audio ${K.audioState} ${K.audioTime.toFixed(1)} s`
    : `audio ${K.audioState} (silent, page clock)`);
  parts.push(`frame ${K.drawnIndex}`);
  parts.push(`dropped ${K.framesDropped}, late ${K.framesLate}`);
  if (K.error) parts.push(K.error);
  statusEl.textContent = parts.join(' · ');
  statusEl.className = (!K.connected && !K.done) || K.error ? 'bad' : '';
}
setInterval(updateStatus, 250);

function report() {
  if (K.viewer === null) return;
  const body = {
    viewer: K.viewer, done: K.done, connected: K.connected, frames_received: K.framesReceived,
    frames_drawn: K.framesDrawn, frames_late: K.framesLate, frames_skipped: K.framesSkipped,
    frames_dropped: K.framesDropped, audio_chunks: K.audioChunks, audio_late: K.audioLate,
    audio_state: K.audioState, audio_time: K.audioTime, clock: K.clock,
    latency_ms: K.latencyMs, latency_p95_ms: K.latencyP95, av_ms: K.avMs, fps: K.fps_,
    resyncs: K.resyncs, error: K.error, transport_ms: quantile(recentNet, 0.5),
    lead_ms: quantile(recentLead, 0.5), shown: shownNew,
  };
  shownNew = [];
  fetch('report', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body) }).catch(() => {});
}
setInterval(() => { if (!K.done) report(); }, 500);

// ---- the stream
function concat(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function onMessage(type, meta, payload) {
  if (type === 'h') {
    K.viewer = meta.viewer; K.rate = meta.rate; K.fps = meta.fps;
    canvas.width = canvas.height = meta.size;
  } else if (type === 'a') onAudio(meta, payload);
  else if (type === 'f') onFrame(meta, payload);
  else if (type === 'd') K.framesDropped += meta.i.length;
  else if (type === 'e') {
    K.ended = true;
    const lastAudio = audio.length ? audio[audio.length - 1] : null;
    endT = lastAudio ? (lastAudio.s + lastAudio.pcm.length) / K.rate : 0;
  }
}

async function connect() {
  const dec = new TextDecoder();
  try {
    const resp = await fetch('stream', { cache: 'no-store' });
    if (!resp.ok) throw new Error('HTTP ' + resp.status);
    K.connected = true;
    K.error = null;
    const reader = resp.body.getReader();
    let buf = new Uint8Array(0);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf = buf.length ? concat(buf, value) : value;
      let pos = 0;
      while (buf.length - pos >= 12) {
        const dv = new DataView(buf.buffer, buf.byteOffset + pos, 12);
        const ml = dv.getUint32(4, true), pl = dv.getUint32(8, true);
        if (buf.length - pos < 12 + ml + pl) break;
        const type = String.fromCharCode(buf[pos]);
        const meta = JSON.parse(dec.decode(buf.subarray(pos + 12, pos + 12 + ml)));
        const payload = buf.slice(pos + 12 + ml, pos + 12 + ml + pl);
        onMessage(type, meta, payload);
        pos += 12 + ml + pl;
      }
      buf = buf.subarray(pos);
    }
  } catch (e) {
    K.error = 'stream: ' + e.message;
  }
  K.connected = false;
  if (!K.ended) {        // the kiosk restarted or the network blinked: start over
    base = null; queue = []; audio = [];
    setTimeout(connect, 1000);
  }
}

setupAudio();
connect();
