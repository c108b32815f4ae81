// The review queue of voicecheck's report.html (inlined into the page; no network, no external asset).
// Data: the JSON in #queue-data, written by voicecheck/report.py:
//   {run, groups: {group: [item index, ...] strongest first}, totals: {group: n}, labels: {group: title},
//    items: [{id, b, v, r, h, ev: {group: [strength, text]}, s, t, chg, w: [[label, score, source]], dur,
//             tl: [[start, end, score]],
//             sr: [[start, end]], a, ex: {src, start_s, end_s} | {error}, o: [[id, verdict, reason]],
//             rv: {label, reviewer, reviewed_at} | null, cmd: [head, tail]}]}
// Every value from the data is put into the page as text (textContent / attributes), never as HTML.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("queue-data").textContent);
  const LABELS = ["genuine", "impostor", "unsure"];
  const PAGE = 50;
  const STORE_KEY = "voicecheck-review:" + data.key;
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  };
  let decisions = {};
  try { decisions = JSON.parse(localStorage.getItem(STORE_KEY) || "{}") || {}; } catch (e) { decisions = {}; }
  const save = () => { try { localStorage.setItem(STORE_KEY, JSON.stringify(decisions)); } catch (e) { /* private mode */ } };
  let page = 0;

  // -- which items are shown --------------------------------------------------------------------
  function selected() {
    const reason = $("f-reason").value, state = $("f-state").value;
    const needle = $("f-search").value.trim().toLowerCase();
    const groups = reason ? [reason] : Object.keys(data.groups);
    const seen = new Set(), out = [];
    for (const g of groups) {
      for (const i of data.groups[g] || []) {
        if (seen.has(i)) continue;
        seen.add(i);
        const item = data.items[i];
        if (needle && !String(item.id).toLowerCase().includes(needle)) continue;
        const decided = Object.prototype.hasOwnProperty.call(decisions, item.id);
        if ((state === "decided" && !decided) || (state === "undecided" && decided)) continue;
        out.push([g, item]);
      }
    }
    return out;
  }

  // -- one card ---------------------------------------------------------------------------------
  const shq = (s) => (/^[A-Za-z0-9_@%+=:,.\/-]+$/.test(s) ? s : "'" + String(s).replace(/'/g, "'\"'\"'") + "'");
  function command(item) {
    const d = decisions[item.id];
    const label = d ? d.label : "LABEL";
    const note = d && d.note ? " --note " + shq(d.note) : "";
    return item.cmd[0] + " --label " + label + note + item.cmd[1];
  }

  function timeline(item) {
    const pts = item.tl || [];
    if (!pts.length) return el("p", { class: "none", text: "no similarity timeline" });
    const W = 520, H = 120, L = 36, B = 18, ns = "http://www.w3.org/2000/svg";
    const end = Math.max(item.dur || 0, ...pts.map((p) => p[1]), 1);
    const scores = pts.map((p) => p[2]).concat(item.t === null || item.t === undefined ? [] : [item.t]);
    let lo = Math.min(...scores), hi = Math.max(...scores);
    if (hi - lo < 1e-6) { lo -= 0.5; hi += 0.5; }
    const x = (s) => L + (s / end) * (W - L - 6), y = (v) => 6 + (1 - (v - lo) / (hi - lo)) * (H - B - 6);
    const svg = document.createElementNS(ns, "svg");
    const add = (tag, attrs, text) => {
      const n = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
      if (text !== undefined) n.textContent = text;
      svg.append(n);
      return n;
    };
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("class", "timeline");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "similarity timeline of " + item.id);
    for (const [a, b] of item.sr || []) add("rect", { x: x(a), y: 6, width: Math.max(1, x(b) - x(a)), height: H - B - 6, fill: "#e3efdc" });
    if (item.ex && item.ex.src) add("rect", { x: x(item.ex.start_s), y: 6, width: Math.max(1, x(item.ex.end_s) - x(item.ex.start_s)), height: H - B - 6, fill: "#fff2b3", "fill-opacity": 0.7 });
    if (item.t !== null && item.t !== undefined) add("line", { x1: L, x2: W - 6, y1: y(item.t), y2: y(item.t), stroke: "#c00000", "stroke-dasharray": "5,3" });
    if (item.chg !== null && item.chg !== undefined) add("line", { x1: x(item.chg), x2: x(item.chg), y1: 6, y2: H - B, stroke: "#7f6000", "stroke-dasharray": "2,2" });
    add("polyline", { points: pts.map((p) => `${x((p[0] + p[1]) / 2).toFixed(1)},${y(p[2]).toFixed(1)}`).join(" "), fill: "none", stroke: "#1f4e79", "stroke-width": 1.5 });
    add("text", { x: 2, y: 14, "font-size": 10 }, hi.toFixed(2));
    add("text", { x: 2, y: H - B, "font-size": 10 }, lo.toFixed(2));
    add("text", { x: L, y: H - 3, "font-size": 10 }, "0 s");
    add("text", { x: W - 6, y: H - 3, "font-size": 10, "text-anchor": "end" }, end.toFixed(0) + " s");
    return svg;
  }

  function card(group, item) {
    const d = decisions[item.id];
    const code = el("code", { class: "cmd", text: command(item) });
    const buttons = LABELS.map((label) =>
      el("button", { type: "button", class: "decide", "data-label": label, "aria-pressed": d && d.label === label ? "true" : "false", text: label }));
    const note = el("input", { type: "text", class: "note", placeholder: "note (optional)", "aria-label": "note", maxlength: "2000" });
    note.value = d && d.note ? d.note : "";
    const update = () => {
      const cur = decisions[item.id];
      for (const b of buttons) b.setAttribute("aria-pressed", cur && cur.label === b.dataset.label ? "true" : "false");
      code.textContent = command(item);
      $("decided-count").textContent = Object.keys(decisions).length + " decided";
    };
    for (const b of buttons) b.addEventListener("click", () => {
      decisions[item.id] = { label: b.dataset.label, note: note.value.trim(), b: item.b, h: item.h, r: group };
      save(); update();
    });
    note.addEventListener("input", () => {
      if (decisions[item.id]) { decisions[item.id].note = note.value.trim(); save(); update(); }
    });
    const copy = el("button", { type: "button", class: "copy", text: "copy" });
    copy.addEventListener("click", () => copyText(code));
    const media = el("div", { class: "media" });
    if (item.ex && item.ex.src) {
      media.append(el("audio", { controls: "", preload: "metadata", src: item.ex.src }),
        el("span", { class: "note", text: `excerpt ${item.ex.start_s.toFixed(1)}-${item.ex.end_s.toFixed(1)} s of the customer channel (highlighted below)` }));
    } else {
      media.append(el("span", { class: "none", text: "no excerpt: " + ((item.ex && item.ex.error) || "none written") }));
    }
    if (item.a) media.append(" ", el("a", { href: item.a, text: "whole recording" }));
    const evidence = Object.entries(item.ev).map(([g, e]) => el("li", { text: (data.labels[g] || g) + ": " + e[1] }));
    if (item.chg !== null && item.chg !== undefined && !item.ev.speaker_change) {
      evidence.push(el("li", { text: `also: the voice changes at ${Number(item.chg).toFixed(1)} s` }));
    }
    for (const w of item.ev.watchlist_hit ? [] : item.w || []) {
      evidence.push(el("li", { text: `also: sounds like watchlist voice ${w[0]} (score ${Number(w[1]).toFixed(3)}, source ${w[2]})` }));
    }
    const others = (item.o || []).filter((o) => o[0] !== item.id)
      .map((o) => `${o[0]} ${o[1]}${o[2] ? " (" + o[2] + ")" : ""}`);
    return el("article", { class: "card", "data-id": item.id, "data-group": group },
      el("h3", {}, el("span", { class: "group", text: data.labels[group] || group }), " ",
        el("code", { class: "cid", text: item.id }), " borrower ", el("code", { text: item.b }),
        " ", el("span", { class: "verdict " + item.v, text: item.v })),
      el("ul", { class: "evidence" }, ...evidence),
      media,
      timeline(item),
      el("p", { class: "others", text: `Other calls of ${item.b} in this run: ` + (others.length ? others.join(", ") : "none") }),
      item.rv ? el("p", { class: "prior", text: `Reviewed before: ${item.rv.label} by ${item.rv.reviewer} at ${item.rv.reviewed_at}` }) : null,
      el("div", { class: "decide", role: "group", "aria-label": "decision" }, ...buttons, " ", note),
      el("p", { class: "command" }, code, " ", copy));
  }

  function copyText(node) {
    const text = node.textContent;
    const fallback = () => {
      const range = document.createRange();
      range.selectNodeContents(node);
      const sel = window.getSelection();
      sel.removeAllRanges(); sel.addRange(range);
      try { document.execCommand("copy"); } catch (e) { /* selected for a manual copy */ }
    };
    if (navigator.clipboard && navigator.clipboard.writeText) navigator.clipboard.writeText(text).catch(fallback);
    else fallback();
  }

  // -- the page of cards, the CSV -------------------------------------------------------------------
  function render() {
    const t0 = performance.now();
    const all = selected();
    const pages = Math.max(1, Math.ceil(all.length / PAGE));
    page = Math.min(page, pages - 1);
    const shown = all.slice(page * PAGE, (page + 1) * PAGE);
    const cards = $("cards");
    cards.replaceChildren();
    let last = null;
    for (const [g, item] of shown) {
      if (g !== last) { cards.append(el("h3", { class: "group-head", text: `${data.labels[g] || g} (${data.totals[g] || 0} flagged)` })); last = g; }
      cards.append(card(g, item));
    }
    $("shown").textContent = all.length ? `calls ${page * PAGE + 1}-${page * PAGE + shown.length} of ${all.length}` : "no call matches";
    $("page").textContent = `page ${page + 1} of ${pages}`;
    $("prev").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
    $("decided-count").textContent = Object.keys(decisions).length + " decided";
    window.voicecheckQueue = { rendered: shown.length, total: all.length, renderMs: performance.now() - t0 };
  }

  const FORMULA = /^[=+\-@\t\r]/;
  const cell = (v) => {
    let s = v === null || v === undefined ? "" : String(v);
    if (FORMULA.test(s)) s = "'" + s; // as voicecheck's own CSVs: a spreadsheet must not run it
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  };
  function csv() {
    const rows = [["call_id", "borrower_id", "label", "note", "reason", "content_hash"]];
    for (const [id, d] of Object.entries(decisions)) rows.push([id, d.b, d.label, d.note, d.r, d.h]);
    return rows.map((r) => r.map(cell).join(",")).join("\r\n") + "\r\n";
  }
  function download() {
    const url = URL.createObjectURL(new Blob([csv()], { type: "text/csv" }));
    const a = el("a", { href: url, download: "reviews-" + data.run.replace(/[^A-Za-z0-9_.-]/g, "_") + ".csv" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  $("f-reason").addEventListener("change", () => { page = 0; render(); });
  $("f-state").addEventListener("change", () => { page = 0; render(); });
  $("f-search").addEventListener("input", () => { page = 0; render(); });
  $("prev").addEventListener("click", () => { page -= 1; render(); window.scrollTo(0, $("queue").offsetTop); });
  $("next").addEventListener("click", () => { page += 1; render(); window.scrollTo(0, $("queue").offsetTop); });
  $("download").addEventListener("click", download);
  $("clear").addEventListener("click", () => {
    if (window.confirm("Forget every decision made on this page?")) { decisions = {}; save(); render(); }
  });
  render();
  window.voicecheckReadyMs = performance.now(); // the first page of cards is there (ms since navigation)
})();
