// vidviz heatmap player: everything after the payload arrives happens here, with no script run.
// Class switch, opacity, normalisation, scrubbing, playback, hover and ground truth are painted
// from the payload (JPEG frames + float16 maps); the state is written to the URL with
// history.replaceState. Only a class whose map is not in the payload asks the server (setTriggerValue).

const STATES = new Map(); // "<payload id>|<view>" -> the player's state, kept across script runs of the same view

function halfToFloat(h) {
  const s = (h & 0x8000) ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
  if (e === 0) return s * Math.pow(2, -14) * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * Math.pow(2, e - 15) * (1 + f / 1024);
}

function decodeMaps(b64, n) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const halves = new Uint16Array(bytes.buffer, 0, n);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.max(0, halfToFloat(halves[i]));
  return out;
}

// Linear resampling with align_corners=False (PyTorch's interpolate): source coordinate of output i.
function srcIndex(i, nIn, nOut) {
  const s = Math.max(0, (i + 0.5) * nIn / nOut - 0.5);
  const i0 = Math.min(Math.floor(s), nIn - 1);
  return [i0, Math.min(i0 + 1, nIn - 1), s - i0];
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  const root = parentElement.querySelector('[data-testid="vv-player"]');
  if (!root || !data || !data.frames) return;
  const viewKey = `${data.id}|${data.view}`;
  if (root.__vv && root.__vv.viewKey === viewKey) {  // a script run of the same view: keep the browser's state
    root.__vv.adopt(data);
    return () => root.__vv && root.__vv.stop();
  }
  if (root.__vv) root.__vv.stop();

  const $ = (id) => root.querySelector(`[data-testid="${id}"]`);
  const sel = $("vv-class"), alphaIn = $("vv-alpha"), normIn = $("vv-norm"), gtIn = $("vv-gt");
  const frameIn = $("vv-frame"), playBtn = $("vv-play"), loopIn = $("vv-loop"), canvas = $("vv-canvas");
  const readout = $("vv-readout"), curveSvg = $("vv-curve"), strip = $("vv-strip"), title = $("vv-title");
  const T = data.frames.length, side = data.side, [Tm, h, w] = data.map_shape, cell = Tm * h * w;
  const jet = data.jet, classes = data.classes, probs = data.probs;
  let available = new Map(); // class -> Float32Array (T', h, w)
  const addMaps = (d) => {
    const all = decodeMaps(d.maps, d.available.length * cell);
    d.available.forEach((c, i) => available.set(c, all.subarray(i * cell, (i + 1) * cell)));
  };
  addMaps(data);
  const saved = STATES.get(viewKey);
  const init = saved || data.init;
  const state = { cls: init.cls, frame: init.frame, alpha: init.alpha, norm: init.norm, gt: init.gt && !!(data.boxes || data.window) };
  let playing = false, rafId = 0, lastTick = 0;
  const paints = []; // timestamps of painted frames during playback (read by `vidviz bench browser`)
  root.__vvPaints = paints;

  // ---------------------------------------------------------------- frames: decoded once, as pixels
  const THUMB = 64;
  const framePixels = [], thumbPixels = [];
  const scratch = document.createElement("canvas");
  const grab = (img, size) => {
    scratch.width = size; scratch.height = size;
    const g = scratch.getContext("2d", { willReadFrequently: true });
    g.drawImage(img, 0, 0, size, size);
    return g.getImageData(0, 0, size, size);
  };
  const ready = Promise.all(data.frames.map((b64) => {
    const img = new Image();
    img.src = `data:image/jpeg;base64,${b64}`;
    return img.decode().then(() => img);
  })).then((imgs) => imgs.forEach((img, t) => { framePixels[t] = grab(img, side); thumbPixels[t] = grab(img, THUMB); }));

  // ---------------------------------------------------------------- the map of the current class
  let cur = null; // {raw, perFrame (T, h*w), max, frameMax (T), curve (T)}
  const classView = (c) => {
    const raw = available.get(c);
    const perFrame = [], frameMax = new Float32Array(T);
    let max = 0;
    for (let i = 0; i < raw.length; i++) if (raw[i] > max) max = raw[i];
    for (let t = 0; t < T; t++) {
      const [a, b, f] = srcIndex(t, Tm, T);
      const m = new Float32Array(h * w);
      for (let k = 0; k < h * w; k++) {
        m[k] = raw[a * h * w + k] * (1 - f) + raw[b * h * w + k] * f;
        if (m[k] > frameMax[t]) frameMax[t] = m[k];
      }
      perFrame.push(m);
    }
    // importance curve: each map time step's total, resampled to T frames (np.interp), summing to 1
    const per = new Float64Array(Tm);
    for (let k = 0; k < Tm; k++) for (let q = 0; q < h * w; q++) per[k] += raw[k * h * w + q];
    const curve = new Float64Array(T);
    for (let t = 0; t < T; t++) {
      const x = Tm > 1 ? t * (Tm - 1) / Math.max(1, T - 1) : 0, a = Math.floor(x), b = Math.min(a + 1, Tm - 1);
      curve[t] = per[a] * (1 - (x - a)) + per[b] * (x - a);
    }
    const tot = curve.reduce((s, v) => s + v, 0);
    for (let t = 0; t < T; t++) curve[t] = tot > 0 ? curve[t] / tot : 1 / T;
    return { c, raw, perFrame, max, frameMax, curve };
  };

  // Blend the jet colour of the (bilinearly upsampled) map over one frame's pixels.
  const paintInto = (ctx, pix, size, t) => {
    const m = cur.perFrame[t];
    const den = state.norm === "frame" ? cur.frameMax[t] : cur.max;
    const inv = den > 1e-12 ? 1 / den : 0, a = state.alpha;
    const out = ctx.createImageData(size, size), src = pix.data, dst = out.data;
    const ys = [], xs = [];
    for (let i = 0; i < size; i++) { ys.push(srcIndex(i, h, size)); xs.push(srcIndex(i, w, size)); }
    for (let y = 0; y < size; y++) {
      const [y0, y1, fy] = ys[y];
      for (let x = 0; x < size; x++) {
        const [x0, x1, fx] = xs[x];
        const v = (m[y0 * w + x0] * (1 - fx) + m[y0 * w + x1] * fx) * (1 - fy)
                + (m[y1 * w + x0] * (1 - fx) + m[y1 * w + x1] * fx) * fy;
        const idx = Math.min(255, Math.max(0, Math.floor(v * inv * 255))) * 3;
        const p = (y * size + x) * 4;
        dst[p] = Math.round(src[p] * (1 - a) + jet[idx] * a);
        dst[p + 1] = Math.round(src[p + 1] * (1 - a) + jet[idx + 1] * a);
        dst[p + 2] = Math.round(src[p + 2] * (1 - a) + jet[idx + 2] * a);
        dst[p + 3] = 255;
      }
    }
    ctx.putImageData(out, 0, 0);
  };

  // ---------------------------------------------------------------- DOM set-up
  canvas.width = side; canvas.height = side;
  const ctx = canvas.getContext("2d");
  sel.innerHTML = "";
  for (const c of data.order) {
    const o = document.createElement("option");
    o.value = String(c);
    o.textContent = `${classes[c]}  (${probs[c].toFixed(2)})` + (available.has(c) ? "" : "  - computed on request");
    sel.appendChild(o);
  }
  frameIn.max = String(T);
  root.dataset.fps = String(data.fps);
  strip.innerHTML = "";
  const thumbs = [];
  for (let t = 0; t < T; t++) {
    const d = document.createElement("div");
    d.className = "vv-thumb" + (data.window && t >= data.window[0] && t <= data.window[1] ? " vv-action" : "");
    const cv = document.createElement("canvas");
    cv.width = THUMB; cv.height = THUMB;
    const lab = document.createElement("span");
    d.append(cv, lab);
    d.addEventListener("click", () => setFrame(t + 1));
    strip.appendChild(d);
    thumbs.push({ d, ctx: cv.getContext("2d"), lab });
  }
  root.querySelector(".vv-gt-label").style.display = data.boxes || data.window ? "" : "none";
  const bar = $("vv-colorbar"), bctx = bar.getContext("2d");
  for (let i = 0; i < 256; i++) {
    bctx.fillStyle = `rgb(${jet[(255 - i) * 3]},${jet[(255 - i) * 3 + 1]},${jet[(255 - i) * 3 + 2]})`;
    bctx.fillRect(0, i, 14, 1);
  }

  // ---------------------------------------------------------------- painting
  const drawBig = () => {
    const t = state.frame - 1;
    paintInto(ctx, framePixels[t], side, t);
    if (state.gt && data.boxes && data.boxes[t]) {
      ctx.lineWidth = Math.max(1, side / 128);
      for (const [role, x1, y1, x2, y2] of data.boxes[t]) {
        ctx.strokeStyle = role === "hand" ? "rgb(255,220,0)" : "rgb(255,255,255)";
        ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      }
    }
    thumbs.forEach((th, i) => th.d.classList.toggle("vv-current", i === t));
    $("vv-frame-label").textContent = `frame ${state.frame} / ${T}: ${(100 * cur.curve[t]).toFixed(1)}% of the map`;
    frameIn.value = String(state.frame);
    drawCurve();
  };
  const drawThumbs = () => thumbs.forEach((th, t) => {
    paintInto(th.ctx, thumbPixels[t], THUMB, t);
    th.lab.textContent = `${t + 1} · ${(100 * cur.curve[t]).toFixed(0)}%`;
  });
  const drawCurve = () => {
    const W = 400, H = 150, pad = 6, ymax = Math.max(...cur.curve) * 1.1 || 1;
    const X = (t) => pad + (W - 2 * pad) * (T > 1 ? t / (T - 1) : 0.5), Y = (v) => H - pad - (H - 2 * pad) * v / ymax;
    let s = "";
    if (state.gt && data.window) {
      const x0 = X(data.window[0] - 0.5), x1 = X(data.window[1] + 0.5);
      s += `<rect x="${x0}" y="0" width="${x1 - x0}" height="${H}" fill="green" opacity="0.12"/>`;
    }
    s += `<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="${Array.from(cur.curve, (v, t) => `${X(t)},${Y(v)}`).join(" ")}"/>`;
    s += `<line x1="${X(state.frame - 1)}" x2="${X(state.frame - 1)}" y1="0" y2="${H}" stroke="red" stroke-dasharray="4 3"/>`;
    curveSvg.innerHTML = s;
  };
  const drawTitle = () => {
    title.textContent = `Target: ${classes[state.cls]} (p = ${probs[state.cls].toFixed(2)}) · ${data.method} at ${data.layer} · ${data.target}`;
    $("vv-bar-max").textContent = state.norm === "frame" ? "frame max" : `max ${cur.max.toExponential(2)}`;
  };

  // Mark what is drawn: the canvas holds it now and the browser paints it at its next frame
  // (the tests and the benchmark read these, then wait one animation frame for the paint).
  const painted = () => {
    root.dataset.class = String(state.cls);
    root.dataset.frame = String(state.frame);
    root.dataset.alpha = String(state.alpha);
    root.dataset.norm = state.norm;
    if (playing) paints.push(performance.now());
  };

  // ---------------------------------------------------------------- state -> URL (no script run)
  let alive = true; // false once the player is unmounted (another page, another clip): it writes no more URLs
  const syncUrl = (mine = false) => {
    STATES.set(viewKey, { ...state });
    if (!alive || !data.clip || !document.contains(root)) return; // an upload cannot be linked to
    let changed = false;
    const u = new URL(window.location.href), q = u.searchParams;
    // only while the address is the viewer's: after a click to another page, Streamlit has changed it
    // before this (soon unmounted) player would write again
    if (!mine && !/\/viewer\/?$/.test(u.pathname) && q.get("page") !== "viewer") return;
    // A link to the app's root path that names the page: it reopens this view without the failed
    // probes Streamlit's client makes for a sub-path (/viewer/_stcore/...).
    const rootPath = u.pathname.replace(/viewer\/?$/, "");
    if (rootPath !== u.pathname) { u.pathname = rootPath; changed = true; }
    const want = { page: "viewer", clip: data.clip, cls: String(state.cls), frame: String(state.frame), alpha: state.alpha.toFixed(2),
                   norm: state.norm, gt: state.gt ? "1" : "0" };
    for (const [k, v] of Object.entries(want)) if (q.get(k) !== v) { q.set(k, v); changed = true; }
    if (changed) window.history.replaceState(window.history.state, "", u.toString());
  };
  let urlTimer = 0;
  // a change the user made in this (shown) player: its URL, whatever the address says now
  const syncUrlSoon = () => { clearTimeout(urlTimer); urlTimer = setTimeout(() => syncUrl(true), playing ? 400 : 0); };

  // ---------------------------------------------------------------- actions
  const setClass = (c) => {
    if (!available.has(c)) {  // not in the payload: the server computes it (the one case that runs the script)
      sel.value = String(state.cls);
      readout.textContent = `Computing the map of ${classes[c]}...`;
      setTriggerValue("request", c);
      return;
    }
    state.cls = c; sel.value = String(c);
    cur = classView(c);
    drawTitle(); drawBig(); drawThumbs(); painted(); syncUrlSoon();
  };
  const setFrame = (f) => {
    state.frame = Math.min(T, Math.max(1, f));
    drawBig(); painted(); syncUrlSoon();
  };
  const redrawAll = () => { drawTitle(); drawBig(); drawThumbs(); painted(); syncUrlSoon(); };
  const tick = (now) => {
    if (!playing) return;
    if (now - lastTick >= 1000 / data.fps - 1) {
      lastTick = now;
      if (state.frame >= T && !loopIn.checked) { pause(); return; }
      state.frame = state.frame >= T ? 1 : state.frame + 1;
      drawBig(); painted(); syncUrlSoon();
    }
    rafId = requestAnimationFrame(tick);
  };
  const play = () => { playing = true; lastTick = 0; paints.length = 0; playBtn.textContent = "\u23F8 Pause"; rafId = requestAnimationFrame(tick); };
  const pause = () => { playing = false; cancelAnimationFrame(rafId); playBtn.textContent = "\u25B6 Play"; syncUrlSoon(); };

  sel.onchange = () => setClass(Number(sel.value));
  frameIn.oninput = () => setFrame(Number(frameIn.value));
  alphaIn.oninput = () => { state.alpha = Number(alphaIn.value); redrawAll(); };
  normIn.onchange = () => { state.norm = normIn.value; redrawAll(); };
  gtIn.onchange = () => { state.gt = gtIn.checked; drawBig(); painted(); syncUrlSoon(); };
  playBtn.onclick = () => (playing ? pause() : play());
  canvas.onmousemove = (e) => {
    const r = canvas.getBoundingClientRect();
    const x = Math.floor((e.clientX - r.left) / r.width * w), y = Math.floor((e.clientY - r.top) / r.height * h);
    if (x < 0 || y < 0 || x >= w || y >= h || !cur) return;
    const v = cur.perFrame[state.frame - 1][y * w + x];
    const den = state.norm === "frame" ? cur.frameMax[state.frame - 1] : cur.max;
    readout.textContent = `cell (row ${y + 1}, col ${x + 1}) of ${h}x${w}: ${v.toExponential(3)} = ${(den > 0 ? v / den : 0).toFixed(2)} of the ${state.norm} max`;
  };
  canvas.onmouseleave = () => { readout.textContent = "Hover over the frame to read a cell's value."; };

  const timers = [];
  const stop = () => {  // unmounted: no playback, no pending URL write, and the player's parameters leave the URL
    alive = false;
    pause();
    clearTimeout(urlTimer);
    timers.forEach(clearTimeout);
    // another page (Streamlit keeps plain parameters across a page switch) or the same view about to be
    // mounted again (adopt() writes them back at once)
    const u = new URL(window.location.href), q = u.searchParams;
    if (q.get("page") === "viewer" && q.get("clip") === data.clip && !/\/viewer\/?$/.test(u.pathname)) {
      for (const k of ["page", "clip", "cls", "frame", "alpha", "norm", "gt", "below", "classes"]) q.delete(k);
      window.history.replaceState(window.history.state, "", u.toString());
    }
  };
  root.__vv = {
    viewKey,
    pause,
    stop,
    adopt(d) {  // a later script run of the same view: maps fetched on request join the payload
      alive = true; // Streamlit unmounted and remounted the same view (its cleanup ran first)
      let added = false;
      for (const c of d.available) if (!available.has(c)) added = true;
      if (added) {
        addMaps(d);
        Array.from(sel.options).forEach((o) => {
          const c = Number(o.value);
          o.textContent = `${classes[c]}  (${probs[c].toFixed(2)})` + (available.has(c) ? "" : "  - computed on request");
        });
        if (d.init && available.has(d.init.cls) && d.init.cls !== state.cls) setClass(d.init.cls);
      }
      syncUrl(true); // the view is shown again: its parameters go back (the server may also have rewritten the URL)
    },
  };

  ready.then(() => {
    if (!available.has(state.cls)) state.cls = data.available[0];
    sel.value = String(state.cls); alphaIn.value = String(state.alpha); normIn.value = state.norm; gtIn.checked = state.gt;
    cur = classView(state.cls);
    redrawAll();
    syncUrl(true); // a view just shown writes its parameters
    // Streamlit may still rewrite the address bar from its own copy of the parameters (a page switch
    // that is settling): write the player's state again once that has happened.
    timers.push(setTimeout(syncUrl, 300), setTimeout(syncUrl, 1500));
  });
  return stop;
}
