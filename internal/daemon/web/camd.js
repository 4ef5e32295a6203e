"use strict";
// camd's dashboard and camera pages. window.camd is the model the page
// was built from (dashboard.go's dashModel); this script fills in the
// numbers, keeps them current by polling /api/status, keeps the pictures
// moving, and on a camera page runs the chosen player and the URLs to
// copy. window.camdProbe is what tests read.
(() => {
  const m = window.camd;
  const probe = window.camdProbe = {loadedAt: Date.now(), polls: 0, failures: 0, player: ""};

  // A token the page was opened with goes on every URL: browsers send a
  // token only where it is written, unlike HTTP Basic.
  const withToken = (u, extra) => {
    const q = [];
    if (extra) q.push(extra);
    if (m.token) q.push("token=" + encodeURIComponent(m.token));
    return q.length ? u + (u.includes("?") ? "&" : "?") + q.join("&") : u;
  };
  const abs = u => new URL(u, location.href).href;
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const setText = (el, s) => { if (el && el.textContent !== s) el.textContent = s; };

  function dur(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor(s % 3600 / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor(s % 86400 / 3600) + " h";
  }
  // How old the newest frame is: camd's share of the latency.
  function age(ms) {
    if (ms < 0) return ["frame yet", "no"];
    return ["old", ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(1) + " s"];
  }
  function badge(el, state) {
    if (!el) return;
    setText(el, state);
    const cls = "badge " + state;
    if (el.className !== cls) el.className = cls;
  }
  // The same as dashboard.go's statusSig.
  const sig = st => st.cameras.map(c => c.name).join(",") + "|" + st.outputs.map(o => o.name + "=" + (o.urls || []).join(" ")).join(",");

  // Stats into spans: [["fps", "10.0"], ["viewers", 2, "web"]] →
  // "<b>10.0</b> fps", "web <b>2</b> viewers".
  function stats(el, items) {
    if (!el) return;
    const html = items.map(([label, value, before]) =>
      "<span>" + (before ? esc(before) + " " : "") + "<b>" + esc(value) + "</b> " + esc(label) + "</span>").join("");
    if (el.innerHTML !== html) el.innerHTML = html;
  }
  const esc = s => String(s).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);

  function render(st) {
    const now = Date.now();
    for (const el of $$("[data-camera]")) {
      const name = el.dataset.camera, c = st.cameras.find(c => c.name === name);
      const view = m.cameras.find(v => v.name === name);
      if (!c || !view) continue;
      badge($("[data-field=state]", el), c.state);
      el.dataset.state = c.state;
      setText($("[data-field=since]", el), c.since ? "for " + dur(now - Date.parse(c.since)) : "");
      setText($("[data-field=reason]", el), c.state === "live" ? "" : (c.reason || c.last_error || ""));
      stats($("[data-field=stats]", el), [
        ["fps", c.fps.toFixed(1)], age(c.last_frame_age_ms), ["frames", c.frames], ["dropped", c.dropped],
      ]);
      const viewers = [];
      for (const oname of view.outputs) {
        const o = st.outputs.find(o => o.name === oname);
        if (!o) continue;
        const ps = ((o.plugin_status || {}).cameras || {})[name] || {};
        const mb = (o.cameras || {})[name] || {};
        let n = ps.viewers !== undefined ? ps.viewers : ps.users;
        let what = n === 1 ? "viewer" : "viewers";
        if (n === undefined && ps.served !== undefined) { n = ps.served; what = "served"; }
        // Frames the output's plugin was too busy to take.
        const skipped = mb.dropped ? " · " + mb.dropped + " skipped" : "";
        viewers.push([what + skipped, n === undefined ? "–" : n, oname]);
      }
      stats($("[data-field=viewers]", el), viewers);
      const detail = $("[data-field=detail]", el);
      if (detail) {
        const items = [["source", c.source], ["size", c.width ? c.width + "×" + c.height : "–"], ["reconnects", c.reconnects], ["placeholders", c.placeholders]];
        for (const [why, n] of Object.entries(c.drops || {})) if (n) items.push(["dropped " + why.replace("_", " "), n]);
        stats(detail, items);
      }
    }
    for (const row of $$("[data-output]")) {
      const o = st.outputs.find(o => o.name === row.dataset.output);
      if (!o) continue;
      badge($("[data-field=state]", row), o.state);
      setText($("[data-field=restarts]", row), String(o.restarts));
      setText($("[data-field=version]", row), o.version || "");
      setText($("[data-field=error]", row), o.state === "running" ? "" : (o.last_error || ""));
    }
  }

  // Pictures. A browser opens at most six connections to one host and
  // port, and an MJPEG picture holds one for as long as it shows: the
  // dashboard streams at most `budget` tiles (?streams=N, default 4),
  // keeping connections free for its numbers and for opening pages. The
  // other tiles show a still every 1.5 s: from a snapshot output, or else
  // the first frame of a short visit to the MJPEG stream. A stream
  // reconnects when it fails or its output's plugin restarted, and stops
  // while the page is hidden.
  const params = new URLSearchParams(location.search);
  const budget = params.has("streams") ? Math.max(0, parseInt(params.get("streams"), 10) || 0) : 4;
  const pids = {};
  function restartedOutputs(st) {
    const changed = new Set();
    for (const o of st.outputs) {
      if (pids[o.name] !== undefined && pids[o.name] !== o.pid) changed.add(o.name);
      pids[o.name] = o.pid;
    }
    return changed;
  }
  function keepStreaming(img, url) {
    let retry = 0;
    const start = () => { clearTimeout(retry); img.src = withToken(url, "r=" + Date.now()); };
    const stop = () => { clearTimeout(retry); img.removeAttribute("src"); };
    img.addEventListener("error", () => {
      if (!img.getAttribute("src")) return;
      clearTimeout(retry);
      retry = setTimeout(start, 2000);
    });
    return {start, stop};
  }
  // keepRefreshing shows what load() gives every `every` ms, loading the
  // next only once the last arrived.
  function keepRefreshing(img, load, every) {
    let busy = false, last = "";
    const next = async () => {
      if (busy || document.hidden) return;
      busy = true;
      try {
        const src = await load();
        img.src = src;
        if (last) URL.revokeObjectURL(last);
        last = src;
      } catch (e) {
        // the next round tries again
      } finally {
        busy = false;
      }
    };
    next();
    return setInterval(next, every);
  }
  // A still from a snapshot output; its offline picture when the camera is.
  async function fetchStill(url) {
    // Bounded, like grabFrame: a hung output must not hold one of the
    // browser's few connections to camd for good.
    const ctl = new AbortController(), timer = setTimeout(() => ctl.abort(), 10000);
    try {
      const r = await fetch(withToken(url, "placeholder=1"), {cache: "no-store", signal: ctl.signal});
      if (!r.ok) throw new Error("status " + r.status);
      return URL.createObjectURL(await r.blob());
    } finally {
      clearTimeout(timer);
    }
  }
  // The first frame of an MJPEG stream: read its first part, then hang up.
  async function grabFrame(url) {
    const ctl = new AbortController(), timer = setTimeout(() => ctl.abort(), 10000);
    try {
      const r = await fetch(withToken(url), {cache: "no-store", signal: ctl.signal});
      if (!r.ok) throw new Error("status " + r.status);
      const reader = r.body.getReader();
      let buf = new Uint8Array(0);
      for (;;) {
        const {value, done} = await reader.read();
        if (done) throw new Error("the stream ended");
        const b = new Uint8Array(buf.length + value.length);
        b.set(buf);
        b.set(value, buf.length);
        buf = b;
        const end = indexOf(buf, [13, 10, 13, 10]); // the end of the first part's headers
        if (end < 0) continue;
        const len = /content-length:\s*(\d+)/i.exec(new TextDecoder().decode(buf.subarray(0, end)));
        if (!len) throw new Error("a part without Content-Length");
        const from = end + 4, to = from + Number(len[1]);
        if (buf.length >= to) return URL.createObjectURL(new Blob([buf.subarray(from, to)], {type: "image/jpeg"}));
      }
    } finally {
      clearTimeout(timer);
      ctl.abort();
    }
  }
  function indexOf(buf, pat) {
    next: for (let i = 0; i + pat.length <= buf.length; i++) {
      for (let j = 0; j < pat.length; j++) if (buf[i + j] !== pat[j]) continue next;
      return i;
    }
    return -1;
  }
  const streams = []; // {output, start, stop}
  for (const img of $$("img.thumb")) {
    const view = m.cameras.find(v => v.name === img.closest("[data-camera]").dataset.camera);
    if (view.mjpeg && streams.length < budget) {
      img.dataset.kind = "mjpeg";
      streams.push({output: view.mjpeg.output, ...keepStreaming(img, view.mjpeg.via + "?fps=2")});
    } else if (view.still) {
      img.dataset.kind = "still";
      keepRefreshing(img, () => fetchStill(view.still.via), 1500);
    } else {
      img.dataset.kind = "frame";
      keepRefreshing(img, () => grabFrame(view.mjpeg.via), 1500);
    }
  }
  for (const s of streams) s.start();
  addEventListener("visibilitychange", () => {
    for (const s of streams) document.hidden ? s.stop() : s.start();
  });

  // The camera page: a choice of player, and URLs for other software.
  if (m.camera) {
    const view = m.cameras.find(v => v.name === m.camera);
    const box = $("#player"), note = $("#player-note");
    let stillTimer = 0;
    const choices = {
      webrtc: view.player && (() => {
        const f = document.createElement("iframe");
        f.src = withToken(view.player.via);
        f.allow = "autoplay; fullscreen";
        f.title = m.camera + ", WebRTC";
        box.replaceChildren(f);
        note.textContent = "WebRTC (H.264 or VP8, lowest latency) from output " + view.player.output + ".";
      }),
      mjpeg: view.mjpeg && (() => {
        const img = document.createElement("img");
        img.alt = m.camera + ", MJPEG";
        box.replaceChildren(img);
        const s = {output: view.mjpeg.output, ...keepStreaming(img, view.mjpeg.via)};
        streams.push(s);
        s.start();
        note.textContent = "MJPEG at the camera's full rate from output " + view.mjpeg.output + ".";
      }),
      still: view.still && (() => {
        const img = document.createElement("img");
        img.alt = m.camera + ", still";
        box.replaceChildren(img);
        stillTimer = keepRefreshing(img, () => fetchStill(view.still.via), 1000);
        note.textContent = "A still every second from output " + view.still.output + ".";
      }),
    };
    const play = () => {
      let want = location.hash.slice(1);
      if (!choices[want]) want = ["webrtc", "mjpeg", "still"].find(k => choices[k]);
      if (!want || probe.player === want) return;
      clearInterval(stillTimer);
      for (const s of streams) s.stop();
      streams.length = 0;
      box.replaceChildren();
      probe.player = want;
      choices[want]();
      for (const a of $$("#players a")) a.className = a.dataset.player === want ? "on" : "";
    };
    addEventListener("hashchange", play);
    play();

    for (const input of $$("input[data-url]")) {
      const url = withToken(abs(input.dataset.url));
      input.value = input.dataset.cmd ? input.dataset.cmd.replace("{url}", url) : url;
    }
    for (const b of $$("button[data-copy]")) {
      b.addEventListener("click", async () => {
        const input = document.getElementById(b.dataset.copy);
        try {
          await navigator.clipboard.writeText(input.value);
        } catch {
          input.select(); // without a secure context: select it, and try the old way
          document.execCommand("copy");
        }
        b.textContent = "Copied";
        setTimeout(() => { b.textContent = "Copy"; }, 1500);
      });
    }
    setText($("#auth-note"), m.token
      ? "These URLs carry the token this page was opened with: give them only to software you trust."
      : m.auth
        ? "camd asks for a login: other software needs ?token=<a view token> at the end of these URLs, or user:password@ before the host."
        : "");
  }

  // Live numbers: poll /api/status every 1.5 s. A reload of camd's
  // config that changed cameras or outputs reloads the page.
  const updated = $("#updated");
  async function poll() {
    try {
      const r = await fetch(withToken(m.base + "api/status"), {cache: "no-store"});
      if (!r.ok) throw new Error("status " + r.status);
      const st = await r.json();
      if (sig(st) !== m.sig) { location.reload(); return; }
      const restarted = restartedOutputs(st);
      for (const s of streams) if (restarted.has(s.output) && !document.hidden) s.start();
      render(st);
      probe.polls++;
      probe.status = st;
      setText(updated, "updated " + new Date().toLocaleTimeString());
      if (updated) updated.style.color = "";
    } catch (e) {
      probe.failures++;
      setText(updated, "camd not answering (" + e.message + ")");
      if (updated) updated.style.color = "var(--bad)";
    }
  }
  restartedOutputs(m.status);
  render(m.status);
  setInterval(poll, 1500);
})();
